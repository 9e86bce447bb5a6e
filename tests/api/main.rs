//! One integration binary: a private PostgreSQL cluster for the whole run, a fresh database
//! per test, the real server on port 0.

mod helpers;
mod node;

mod app;
mod auth;
mod cli;
mod clients;
mod clients_embed;
mod clients_realtime;
mod faults;
mod isolation;
mod limits;
mod quotas;
mod realtime;
mod realtime_commit;
mod realtime_delivery;
mod realtime_faults;
mod realtime_phoenix;
mod rest;
mod rest_bad_input;
mod rest_conformance;
mod rest_embed;
mod rest_isolation;
mod rest_json_select;
mod rest_operators;
mod rest_rpc;
mod rest_shapes;
mod rest_supabase;
mod rest_write;
mod schema;
mod security;
mod webhooks;
