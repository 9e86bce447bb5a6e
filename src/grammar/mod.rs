//! Pure grammars shared by the REST layer and realtime: [`filter`] (PostgREST filters and
//! logic trees) over the lexical pieces of [`lex`].

pub mod filter;
pub mod lex;
pub mod path;
