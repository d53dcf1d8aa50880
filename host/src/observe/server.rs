//! The HTTP listener: `/metrics` (Prometheus), `/healthz` (the process serves), `/readyz`
//! (source connected, sinks open, plugins loaded), and the dashboard at `/`. One small hyper
//! server on the tokio runtime; nothing on it touches the data path beyond reading counters.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::export;
use crate::metrics::Metrics;

/// The listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("observability.listen: cannot listen on {addr}: {source}")]
pub struct ListenError {
    /// The configured address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> Result<Self, ListenError> {
        let inner = TcpListener::bind(addr)
            .await
            .map_err(|source| ListenError { addr, source })?;
        Ok(Listener { inner })
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr().ok()
    }

    /// Serves `metrics` until the returned task is aborted (or the runtime ends).
    pub fn serve(self, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let (stream, _) = match self.inner.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // E.g. out of file descriptors: wait a little rather than spin.
                        tracing::warn!(%error, "observability listener cannot accept");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let metrics = Arc::clone(&metrics);
                        async move { Ok::<_, Infallible>(respond(&req, &metrics)) }
                    });
                    if let Err(error) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%error, "observability connection ended with an error");
                    }
                });
            }
        })
    }
}

fn respond(req: &Request<Incoming>, metrics: &Arc<Metrics>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match req.uri().path() {
        "/metrics" => match export::render(metrics) {
            Ok(body) => with_type(StatusCode::OK, export::CONTENT_TYPE, body),
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded\n",
            ),
        },
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if metrics.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: source, sinks or plugins still starting (or stopping)\n",
                )
            }
        }
        "/api/dashboard" => with_type(
            StatusCode::OK,
            "application/json",
            super::dashboard::json(metrics),
        ),
        path => match super::dashboard::asset(path) {
            Some(asset) => with_type(
                StatusCode::OK,
                asset.content_type,
                Bytes::from_static(asset.body),
            ),
            None => text(
                StatusCode::NOT_FOUND,
                "not found; try / (the dashboard), /metrics, /healthz or /readyz\n",
            ),
        },
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn with_type(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}
