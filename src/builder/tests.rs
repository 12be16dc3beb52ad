//! Unit tests of the builder.

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

#[test]
fn the_writer_is_given_the_password_of_the_url_to_mask() {
    for (url, password) in [
        ("postgres://app:s3cret@db:5432/app", Some("s3cret")),
        (
            "postgres://app:p%40ss@db/app?sslmode=disable",
            Some("p%40ss"),
        ),
        (
            "postgres://app@db/app?password=s3cret&sslmode=disable",
            Some("s3cret"),
        ),
        ("postgres://app@db/app", None),
        ("postgres://db/app", None),
    ] {
        assert_eq!(url_password(url).as_deref(), password, "{url}");
    }
}
