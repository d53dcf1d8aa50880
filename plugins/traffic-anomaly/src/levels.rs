//! The structure of a site, learned from the URLs it serves: every page belongs to a chain of
//! *levels* between the site and itself, derived from its path alone, so no site map is
//! needed and any URL scheme works.
//!
//! - A **directory level** per proper path prefix: `/shop/books/item/42` is under `/shop/`,
//!   `/shop/books/` and `/shop/books/item/`.
//! - A **stem level** when the last segment is a name followed by an id: `/p/books-42` is
//!   under `/p/books-*` (the id is the trailing run of digits after `-`, `_` or `.`), which
//!   groups the siblings that share the name.
//!
//! `/p/books-42` → `/p/`, `/p/books-*`; `/category/books/item-7` → `/category/`,
//! `/category/books/`, `/category/books/item-*`; `/product/123` → `/product/`;
//! `/category/books` → `/category/`; `/`, `/cart` and `/404` have only the site above them.
//!
//! A level is named by its last literal token (`books` for `/p/books-*` and for
//! `/category/books/`): entity type `category`; a first-level directory (`/p/`) is a
//! `section`.

/// At most this many levels per page (the coarsest are kept): deeper paths add nothing a
/// detector could find that their coarser levels do not show.
pub const MAX_LEVELS: usize = 4;

/// The path of a url: scheme and host removed, query and fragment cut.
pub fn path_of(url: &str) -> &str {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => url,
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// The levels of a page, coarsest first (see the module doc).
pub fn levels(url: &str) -> Vec<String> {
    let segments: Vec<&str> = path_of(url).split('/').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::new();
    let Some((last, dirs)) = segments.split_last() else {
        return out;
    };
    let mut prefix = String::from("/");
    for d in dirs {
        prefix.push_str(d);
        prefix.push('/');
        out.push(prefix.clone());
    }
    if let Some(stem) = stem(last) {
        out.push(format!("{prefix}{stem}*"));
    }
    out.truncate(MAX_LEVELS);
    out
}

/// `books-42` → `books-`; `item_7` → `item_`; `42`, `books` → `None`.
fn stem(segment: &str) -> Option<&str> {
    let digits = segment.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits == segment.len() {
        return None;
    }
    let head = &segment[..segment.len() - digits];
    let sep = head.chars().last()?;
    (matches!(sep, '-' | '_' | '.') && head.len() > 1).then_some(head)
}

/// How a level is named in alerts: (`entity_type`, `entity`).
pub fn name(level: &str) -> (&'static str, String) {
    let literal = level.trim_end_matches(['*', '/']);
    let token = literal
        .rsplit('/')
        .next()
        .unwrap_or(literal)
        .trim_end_matches(['-', '_', '.']);
    let depth = level.trim_matches('/').split('/').count();
    if level.ends_with('/') && depth == 1 {
        ("section", level.to_owned())
    } else {
        ("category", token.to_owned())
    }
}

/// Whether a page looks like an error page (`/404`, `/error`, `/not-found`): a rise of one is
/// evidence of breakage, never a traffic spike in its own right.
pub fn is_error_page(url: &str) -> bool {
    let p = path_of(url).to_ascii_lowercase();
    p.split('/').any(|s| {
        matches!(s, "404" | "410" | "500" | "error" | "errors")
            || s.starts_with("not-found")
            || s.starts_with("notfound")
            || s.starts_with("404.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_of_common_url_schemes() {
        assert_eq!(
            levels("https://shop.example/p/books-42"),
            ["/p/", "/p/books-*"]
        );
        assert_eq!(
            levels("/category/books/item-7?ref=x"),
            ["/category/", "/category/books/", "/category/books/item-*"]
        );
        assert_eq!(
            levels("/shop/books/item/4711"),
            ["/shop/", "/shop/books/", "/shop/books/item/"]
        );
        assert_eq!(levels("/product/123"), ["/product/"]);
        assert!(levels("/").is_empty());
        assert_eq!(levels("/category/books"), ["/category/"]);
        assert!(levels("https://shop.example").is_empty());
        assert_eq!(levels("/a/b/c/d/e/f-1").len(), MAX_LEVELS);
    }

    #[test]
    fn levels_are_named_by_their_token() {
        assert_eq!(name("/p/books-*"), ("category", "books".to_owned()));
        assert_eq!(name("/category/books/"), ("category", "books".to_owned()));
        assert_eq!(name("/p/"), ("section", "/p/".to_owned()));
        assert_eq!(name("/shop/books/item/"), ("category", "item".to_owned()));
    }

    #[test]
    fn error_pages_are_recognised() {
        assert!(is_error_page("https://shop.example/404"));
        assert!(is_error_page("/errors/500"));
        assert!(is_error_page("/not-found"));
        assert!(!is_error_page("/p/books-404"));
        assert!(!is_error_page("/category/books"));
    }
}
