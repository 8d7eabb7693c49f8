//! What every API module shares: the state the handlers read ([`ApiState`]), the one error
//! type ([`ApiError`], sent as [`ErrorBody`]), query and limit checks that turn bad input into
//! a 400, and the schemas of the fleet's vocabulary (label keys, incident kinds, error
//! classes), built from the enums in `storepulse-shared` so the document lists exactly their
//! spellings and no copy of them lives here.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use axum::Json;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Serialize, Serializer};
use storepulse_collector_core::Fleet;
use storepulse_collector_core::incident::IncidentBook;
use storepulse_shared::taxonomy::ErrorClass;
use storepulse_shared::{IncidentKind, LabelKey};
use tracing::error;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::store::Store;

/// What the handlers read.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The fleet registry (written by the group commit writer).
    pub fleet: Arc<RwLock<Fleet>>,
    /// The record store.
    pub store: Store,
    /// Incidents from the detection loop.
    pub incidents: Arc<RwLock<IncidentBook>>,
    /// Collector metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Turns true on shutdown (long-lived responses such as the event stream end then).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// An error as returned to HTTP clients ([`ErrorBody`]); internals are logged, not shown.
#[derive(Debug)]
pub enum ApiError {
    /// 404.
    NotFound(String),
    /// 400.
    BadRequest(String),
    /// 500.
    Internal,
}

/// The body of every error response (400, 401, 403, 404, 500).
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

impl ApiError {
    /// A 500 for a failed store read or task, logged with `what`.
    pub(crate) fn internal(what: &'static str, e: impl std::fmt::Display) -> Self {
        error!(error = %e, what, "API request failed");
        Self::Internal
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error) = match self {
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            ),
        };
        (status, Json(ErrorBody { error })).into_response()
    }
}

/// The query, or a 400 naming what is wrong with it (an unknown parameter, a bad value).
pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

/// `limit` or its default, or a 400 when it is outside `1..=max`.
pub(crate) fn limit(given: Option<usize>, default: usize, max: usize) -> Result<usize, ApiError> {
    let limit = given.unwrap_or(default);
    if limit == 0 || limit > max {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {max}"
        )));
    }
    Ok(limit)
}

/// Runs a blocking store read off the async threads; a failure is a logged 500.
pub(crate) async fn blocking<T, E>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(what, e))?
        .map_err(|e| ApiError::internal(what, e))
}

/// Adds `T`'s schema and those it refers to (for hand-written [`ToSchema::schemas`]).
pub(crate) fn register<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

/// One closed object with the properties and required fields of every object in `parts`:
/// the schema of a struct that `#[serde(flatten)]`s others (utoipa's `allOf` for it could not
/// be closed to other fields, so a stray field would pass).
pub(crate) fn merged(
    parts: impl IntoIterator<Item = RefOr<Schema>>,
    description: &str,
) -> RefOr<Schema> {
    let mut out = ObjectBuilder::new()
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for part in parts {
        if let RefOr::T(Schema::Object(o)) = part {
            for (name, schema) in o.properties {
                out = out.property(name, schema);
            }
            for name in o.required {
                out = out.required(name);
            }
        }
    }
    out.into()
}

/// A string schema whose values are `values`, with a description.
pub(crate) fn string_enum(
    description: &str,
    values: impl IntoIterator<Item = &'static str>,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .description(Some(description))
        .into()
}

/// Wraps a vocabulary enum of `storepulse-shared` for the API: serialized as its canonical
/// name, documented as a string enum listing every value of `$all`.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident($inner:ty), $all:expr, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.0.as_str())
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_enum($description, $all.iter().map(|v| v.as_str()))
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

vocabulary!(
    /// Any label key, `terminal_id` included (incident scopes).
    LabelName(LabelKey),
    LabelKey::ALL,
    "A label key in its canonical spelling (`GET /api/v1/labels`)"
);

vocabulary!(
    /// A label a terminal carries besides its id (terminal filters, breakdown groups).
    TerminalLabel(LabelKey),
    LabelKey::TERMINAL_LABELS,
    "A label a terminal carries besides its id, in its canonical spelling"
);

vocabulary!(
    /// The kind of an incident.
    Kind(IncidentKind),
    IncidentKind::ALL,
    "What kind of problem an incident is"
);

vocabulary!(
    /// A taxonomy class of response codes.
    Class(ErrorClass),
    ErrorClass::ALL,
    "The taxonomy class of a response code"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_schemas_list_every_spelling() {
        let values = |s: RefOr<Schema>| match s {
            RefOr::T(Schema::Object(o)) => o
                .enum_values
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>(),
            _ => panic!("not an object schema"),
        };
        let labels = values(TerminalLabel::schema());
        assert_eq!(labels.len(), LabelKey::TERMINAL_LABELS.len());
        assert!(!labels.contains(&"terminal_id".to_owned()));
        assert!(values(LabelName::schema()).contains(&"terminal_id".to_owned()));
        assert_eq!(
            values(Kind::schema()),
            IncidentKind::ALL.map(|k| k.as_str().to_owned())
        );
        assert_eq!(
            serde_json::to_value(Class(ErrorClass::MerchantConfig)).ok(),
            Some(serde_json::json!("merchant_config"))
        );
    }
}
