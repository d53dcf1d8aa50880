//! Glue between the WIT bindings and the [`Plugin`] trait. Not part of the public API: only
//! [`crate::export_plugin!`] reaches in here.

use crate::log::Level;

#[cfg(target_arch = "wasm32")]
pub use wit_bindgen;

#[cfg(target_arch = "wasm32")]
mod guest;
#[cfg(target_arch = "wasm32")]
pub use guest::*;

/// Forwards a log line to the host (wasm) or to stderr (native tests).
pub fn emit_log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    guest::host_log(level, message, fields);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("[{level:?}] {message} {}", fields.join(" "));
    }
}

/// Turns a type implementing [`crate::Plugin`] into the plugin's wasm exports. Write it once,
/// at the crate root, after the type. On native targets it expands to nothing, so the same crate
/// also builds for unit tests.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::__private::bindings::exports::clickwatch::plugin::plugin as __cw;
            struct __ClickwatchExport;
            impl __cw::Guest for __ClickwatchExport {
                fn info() -> __cw::PluginInfo {
                    $crate::__private::info::<$plugin>()
                }
                fn init(settings: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$plugin>(&settings)
                }
                fn process(batch: __cw::ClickBatch) -> ::core::result::Result<__cw::Output, ::std::string::String> {
                    $crate::__private::process::<$plugin>(batch)
                }
                fn tick(watermark_ms: i64) -> ::core::result::Result<__cw::Output, ::std::string::String> {
                    $crate::__private::tick::<$plugin>(watermark_ms)
                }
                fn snapshot() -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                    $crate::__private::snapshot::<$plugin>()
                }
                fn restore(state: ::std::vec::Vec<u8>) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::restore::<$plugin>(&state)
                }
            }
            $crate::__private::bindings::export!(__ClickwatchExport with_types_in $crate::__private::bindings);
        };
    };
}
