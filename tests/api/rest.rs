//! REST API over real HTTP (PostgREST dialect).
