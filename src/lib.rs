//! rowcast: a multi-tenant backend where PostgreSQL is the authority.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod core;
pub mod db;
pub mod dev;
pub mod error;
pub mod http;
pub mod i18n;
pub mod me;
pub mod ops;
pub mod realtime;
pub mod rest;
pub mod secret;
pub mod stats;
pub mod telemetry;
