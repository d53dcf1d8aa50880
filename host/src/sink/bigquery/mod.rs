//! The BigQuery aggregate sink: plugin-declared tables created (or extended with new nullable
//! columns) in a dataset, rows streamed with `tabledata.insertAll` in bounded chunks with
//! deterministic insert ids, rows BigQuery rejects handed back for the dead letters while their
//! siblings are kept, and 429/5xx/connection failures reported as retryable so the sink stage
//! retries them (an outage becomes backpressure).

mod insert_id;
mod schema;

pub use insert_id::insert_id;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use gcp_bigquery_client::Client;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::dataset::Dataset;
use gcp_bigquery_client::model::table_data_insert_all_request::TableDataInsertAllRequest;

use super::{AggregateSink, SinkError};
use crate::aggregate::{AggregateRow, TableSchema, Value};
use crate::event::format_time;

const SINK: &str = "bigquery";
/// BigQuery's documented limits are 50 000 rows and 10 MB per request; 500 rows is its
/// recommendation, and the byte cap keeps well under the limit.
const MAX_ROWS: usize = 500;
const MAX_BYTES: usize = 5 << 20;

/// How the sink authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A service-account key file.
    ServiceAccountKey(PathBuf),
    /// Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata server).
    ApplicationDefault,
    /// A fixed bearer token: for the emulator in tests.
    StaticToken(String),
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct BigQuerySettings {
    /// GCP project.
    pub project: String,
    /// Dataset (created if missing).
    pub dataset: String,
    /// Dataset location for creation (e.g. "US", "EU").
    pub location: Option<String>,
    /// Credentials.
    pub credentials: Credentials,
    /// API base URL, e.g. `http://127.0.0.1:19050/bigquery/v2` for the emulator; Google's when
    /// `None`.
    pub endpoint: Option<String>,
}

#[derive(Clone)]
struct StaticToken(String);

#[async_trait]
impl gcp_bigquery_client::auth::Authenticator for StaticToken {
    async fn access_token(&self) -> Result<String, BQError> {
        Ok(self.0.clone())
    }
}

/// Classifies a client error: throttling, server errors and transport failures are retryable.
fn error(context: &str, e: BQError) -> SinkError {
    let retryable = match &e {
        BQError::ResponseError { error } => {
            matches!(error.error.code, 408 | 429 | 500 | 502 | 503 | 504)
        }
        BQError::RequestError(_)
        | BQError::NoToken
        | BQError::AuthError(_)
        | BQError::YupAuthError(_) => true,
        _ => false,
    };
    SinkError {
        sink: SINK,
        message: format!("{context}: {e}"),
        retryable,
    }
}

fn is_not_found(e: &BQError) -> bool {
    matches!(e, BQError::ResponseError { error } if error.error.code == 404)
}

/// A write that failed part-way.
struct Partial {
    /// Insert ids of all its rows, concatenated: identifies the retry of the same rows.
    fingerprint: String,
    /// Chunks accepted.
    done: usize,
    /// Rows those chunks (or the table lookup) rejected.
    rejected: Vec<(usize, String)>,
}

/// The sink.
pub struct BigQuerySink {
    client: Client,
    settings: BigQuerySettings,
    tables: BTreeMap<String, TableSchema>,
    /// Progress of a write that failed part-way: (fingerprint of its rows, chunks already
    /// accepted, rows they rejected). The sink stage retries the same rows; accepted chunks are
    /// not sent again and their rejections are still reported.
    partial: Option<Partial>,
}

impl std::fmt::Debug for BigQuerySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigQuerySink")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl BigQuerySink {
    /// Builds the client and makes sure the dataset exists.
    pub async fn open(settings: BigQuerySettings) -> Result<Self, SinkError> {
        let mut builder = ClientBuilder::new();
        if let Some(endpoint) = &settings.endpoint {
            builder.with_v2_base_url(endpoint.trim_end_matches('/').to_owned());
        }
        let client = match &settings.credentials {
            Credentials::StaticToken(token) => {
                builder
                    .build_from_authenticator(Arc::new(StaticToken(token.clone())))
                    .await
            }
            Credentials::ServiceAccountKey(path) => {
                builder
                    .build_from_service_account_key_file(&path.to_string_lossy())
                    .await
            }
            Credentials::ApplicationDefault => {
                builder.build_from_application_default_credentials().await
            }
        }
        .map_err(|e| SinkError::permanent(SINK, format!("cannot build the client: {e}")))?;
        let sink = BigQuerySink {
            client,
            settings,
            tables: BTreeMap::new(),
            partial: None,
        };
        sink.ensure_dataset().await?;
        Ok(sink)
    }

    async fn ensure_dataset(&self) -> Result<(), SinkError> {
        let (project, dataset) = (&self.settings.project, &self.settings.dataset);
        match self.client.dataset().get(project, dataset).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => {
                let mut ds = Dataset::new(project, dataset);
                if let Some(location) = &self.settings.location {
                    ds = ds.location(location);
                }
                self.client
                    .dataset()
                    .create(ds)
                    .await
                    .map_err(|e| error("create dataset", e))?;
                tracing::info!(project, dataset, "created BigQuery dataset");
                Ok(())
            }
            Err(e) => Err(error("get dataset", e)),
        }
    }

    /// The client, for queries in tests and tools.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn row_json(schema: &TableSchema, row: &AggregateRow, ingest: &str) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        for (column, value) in schema.columns.iter().zip(&row.values) {
            let v = match value {
                Value::Null => continue,
                Value::Int64(x) => serde_json::json!(x.to_string()),
                Value::Float64(x) => serde_json::json!(x),
                Value::Text(s) => serde_json::json!(s),
                Value::Timestamp(ms) => serde_json::json!(format_time(*ms)),
                Value::Boolean(b) => serde_json::json!(b),
            };
            object.insert(column.name.clone(), v);
        }
        object.insert(schema::INGEST_TIME.to_owned(), serde_json::json!(ingest));
        serde_json::Value::Object(object)
    }
}

/// One row ready to send: its index in the batch, its JSON, its insert id.
type PreparedRow = (usize, serde_json::Value, String);

/// Rows of one table in request-sized chunks: (table, [(index in the batch, row)]).
fn chunks<'a>(
    tables: &'a BTreeMap<String, TableSchema>,
    rows: &'a [AggregateRow],
    unknown: &mut Vec<(usize, String)>,
) -> Result<Vec<(&'a TableSchema, Vec<PreparedRow>)>, SinkError> {
    let ingest = format_time(chrono::Utc::now().timestamp_millis());
    let mut by_table: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        by_table.entry(row.table.as_str()).or_default().push(i);
    }
    let mut out = Vec::new();
    for (table, indices) in by_table {
        let Some(schema) = tables.get(table) else {
            // A table that could not be created: refuse its rows alone.
            unknown.extend(
                indices
                    .iter()
                    .map(|&i| (i, format!("table {table} is not available in this dataset"))),
            );
            continue;
        };
        let mut current: Vec<PreparedRow> = Vec::new();
        let mut bytes = 0;
        for i in indices {
            let json = BigQuerySink::row_json(schema, &rows[i], &ingest);
            let size = json.to_string().len() + 64;
            if !current.is_empty() && (current.len() >= MAX_ROWS || bytes + size > MAX_BYTES) {
                out.push((schema, std::mem::take(&mut current)));
                bytes = 0;
            }
            bytes += size;
            current.push((i, json, insert_id(schema, &rows[i])));
        }
        if !current.is_empty() {
            out.push((schema, current));
        }
    }
    Ok(out)
}

#[async_trait]
impl AggregateSink for BigQuerySink {
    async fn ensure_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        schema::ensure_table(
            &self.client,
            &self.settings.project,
            &self.settings.dataset,
            table,
        )
        .await?;
        self.tables.insert(table.name.clone(), table.clone());
        Ok(())
    }

    async fn write(&mut self, rows: &[AggregateRow]) -> Result<Vec<(usize, String)>, SinkError> {
        let mut unknown = Vec::new();
        let chunks = chunks(&self.tables, rows, &mut unknown)?;
        // Chunks accepted by an earlier, failed attempt at these same rows are not resent.
        let fingerprint = chunks
            .iter()
            .flat_map(|(_, c)| c.iter().map(|(_, _, id)| id.as_str()))
            .collect::<Vec<_>>()
            .concat();
        // Resume after the chunks an earlier attempt got accepted, with the rows they rejected.
        let (skip, mut rejected) = match self.partial.take() {
            Some(p) if p.fingerprint == fingerprint => (p.done, p.rejected),
            _ => (0, unknown),
        };
        for (n, (schema, chunk)) in chunks.iter().enumerate().skip(skip) {
            let mut request = TableDataInsertAllRequest::new();
            // Without it one bad row fails the whole request; with it the others are kept and
            // the bad ones come back in insertErrors.
            request.skip_invalid_rows();
            for (_, json, id) in chunk {
                request
                    .add_row(Some(id.clone()), json)
                    .map_err(|e| SinkError::permanent(SINK, e))?;
            }
            let response = self
                .client
                .tabledata()
                .insert_all(
                    &self.settings.project,
                    &self.settings.dataset,
                    &schema.name,
                    request,
                )
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    self.partial = Some(Partial {
                        fingerprint,
                        done: n,
                        rejected,
                    });
                    return Err(error(&format!("insert into {}", schema.name), e));
                }
            };
            for insert_error in response.insert_errors.unwrap_or_default() {
                let Some((index, _, _)) = insert_error.index.and_then(|i| chunk.get(i as usize))
                else {
                    continue;
                };
                let reason = insert_error
                    .errors
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e.reason.unwrap_or_default(),
                            e.message.unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                rejected.push((*index, format!("table {}: {reason}", schema.name)));
            }
        }
        self.partial = None;
        Ok(rejected)
    }
}
