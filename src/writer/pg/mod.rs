//! PostgreSQL's wire details the writer needs: binary `COPY` encoding, the tables as the writer
//! writes them (staging and upsert SQL), and the connection that writes a batch.

pub(crate) mod copy;
pub(crate) mod encoded;
pub(crate) mod parts;
pub(crate) mod rollups;
pub(crate) mod sink;
pub(crate) mod tables;
