//! The HTTP adapter against a real server on loopback: what it returns and refuses.

use chat_jwks::HttpKeySet;
use chat_shared::ports::KeySetSource;
use chat_tests::provider::{Answer, Jwks};

#[tokio::test]
async fn a_document_is_returned_as_served() {
    let jwks = Jwks::start(Answer::Json(r#"{"keys":[]}"#.into())).await;
    let source = HttpKeySet::new(&jwks.url).unwrap();
    assert_eq!(source.fetch(1024).await.unwrap(), br#"{"keys":[]}"#);
}

#[tokio::test]
async fn what_is_not_a_small_200_is_an_error() {
    let jwks = Jwks::start(Answer::Status(503)).await;
    let source = HttpKeySet::new(&jwks.url).unwrap();
    let error = source.fetch(1024).await.unwrap_err();
    assert!(error.contains("503"), "{error}");
    // Announced too long, or streamed past the limit without a length.
    jwks.set(Answer::Json("x".repeat(2048)));
    assert!(
        source
            .fetch(1024)
            .await
            .unwrap_err()
            .contains("over 1024 bytes")
    );
    jwks.set(Answer::Huge(50 * 1024 * 1024));
    assert!(
        source
            .fetch(64 * 1024)
            .await
            .unwrap_err()
            .contains("over 65536 bytes")
    );
    // A redirect is not followed: the URL is configured exactly.
    jwks.set(Answer::Redirect("http://127.0.0.1:9/elsewhere".into()));
    assert!(source.fetch(1024).await.unwrap_err().contains("302"));
    assert_eq!(jwks.requests(), 4);
}

#[tokio::test]
async fn an_endpoint_that_is_down_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let error = HttpKeySet::new(&url)
        .unwrap()
        .fetch(1024)
        .await
        .unwrap_err();
    assert!(error.starts_with("GET http://127.0.0.1:"), "{error}");
}

#[tokio::test]
async fn an_https_url_is_fetched_over_tls_only() {
    // GIVEN a server that answers in plain HTTP at once, named by an https:// URL
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let body = r#"{"keys":[]}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    // WHEN the set is fetched THEN the TLS handshake fails: nothing is read in clear
    let error = HttpKeySet::new(&url)
        .unwrap()
        .fetch(1024)
        .await
        .unwrap_err();
    assert!(error.starts_with("GET https://127.0.0.1:"), "{error}");
}
