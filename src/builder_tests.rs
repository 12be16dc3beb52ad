//! Unit tests of `builder.rs`.

use super::*;

#[test]
fn debug_never_shows_the_password() {
    for url in [
        "postgres://app:s3cret@db:5432/app",
        "postgres://app:s3cret@db/app?sslmode=disable",
        "postgres://app@db/app?password=s3cret&sslmode=disable",
    ] {
        let shown = format!("{:?}", Builder::new(url));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }
    let options: PgConnectOptions = "postgres://app:s3cret@db/app".parse().expect("valid");
    let shown = format!("{:?}", Builder::from_options(options));
    assert!(
        !shown.contains("s3cret") && shown.contains("app@db"),
        "{shown}"
    );
}
