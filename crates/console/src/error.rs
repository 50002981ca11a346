use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::html;

/// Why the console refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("you do not have permission to do this")]
    Forbidden,
    #[error("{0} was not found")]
    NotFound(&'static str),
    #[error("{0}")]
    BadRequest(String),
    #[error("the page's security token was missing or out of date; go back, reload the page and try again")]
    CsrfMismatch,
    #[error("console settings: {0}")]
    Settings(String),
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] sheepdog_store::StoreError),
    /// A part the request needs is still starting (or failed to).
    #[error("{0}")]
    Starting(&'static str),
}

impl ConsoleError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Forbidden | Self::CsrfMismatch => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Starting(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(sheepdog_store::StoreError::Invalid { .. }) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Self::Store(sheepdog_store::StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            Self::Store(sheepdog_store::StoreError::Forbidden { .. }) => StatusCode::FORBIDDEN,
            Self::Store(sheepdog_store::StoreError::Duplicate { .. }) => StatusCode::CONFLICT,
            Self::Settings(_) | Self::Hashing(_) | Self::Store(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// What the person sees: the message, except that internal failures
    /// are logged and described only in general terms.
    pub fn public_message(&self) -> String {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "console request failed");
            "something went wrong on the server; the error is in sheepdog's log".to_string()
        } else {
            self.to_string()
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = match status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            _ => "There is a problem",
        };
        let body = format!(
            "<h1>{}</h1><p>{}</p><p><a href=\"/\">Back to the start page</a></p>",
            html::escape(title),
            html::escape(&self.public_message())
        );
        (status, html::bare_page(title, &body)).into_response()
    }
}
