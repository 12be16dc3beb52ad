//! Nothing: this package holds only tests (`tests/`), of tracing-postgres against the LLM crates its users instrument with.
