//! `portico-client`: how Portico's processes reach each other.
//!
//! What it is: the one admin-API client ([`ApiClient`], on reqwest with rustls and ring)
//! that the site agent, the proxy, the `portico` CLI and gslb-dns itself use: typed calls
//! over the [`topology::wire`] types, a connect and a total timeout on every request, the
//! next node tried when one fails, and the reader of the watch stream ([`watch`]). Beside it
//! the one DNS stub client ([`dns`], hickory-proto: random ids, the reply's QR and question
//! checked, TCP when truncated) for drills and member discovery, and what every Portico
//! binary does alike: its logging set-up and its wait for a signal ([`process`]).
//!
//! What it is not: a server, or a general HTTP client (it speaks the admin API only).

pub mod api;
pub mod dns;
pub mod error;
pub mod process;
pub mod tls;
pub mod watch;

pub use api::{ApiClient, ClientOptions, Method};
pub use error::ClientError;
