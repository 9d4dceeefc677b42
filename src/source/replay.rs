//! Replay transport for `--api-base file://DIR`: each request is answered from the
//! recorded JSON file at [`Request::replay_path`] below DIR (200), or 404 when there is
//! no such file. The answers go through the same parsing and policy as live ones, so the
//! whole job runs offline on the bundled `fixtures/`.

use std::io::ErrorKind;
use std::path::PathBuf;

use super::{Reply, Request, Transport, TransportError};

pub struct ReplayTransport {
    dir: PathBuf,
}

impl ReplayTransport {
    pub fn new(dir: PathBuf) -> Self {
        ReplayTransport { dir }
    }
}

/// The recorded answer to `request` below `dir`: its file (200), or 404 when there is none.
/// An identifier that is empty or a dot segment is refused, so no request reads outside
/// `dir`. Every replay transport (SIS/HR, Canvas) reads through this.
pub(crate) fn read_recorded(
    dir: &std::path::Path,
    request: &Request,
) -> Result<(u16, Vec<u8>), TransportError> {
    if let Some(id) = request.refused_identifier() {
        return Err(TransportError {
            message: format!(
                "refusing to replay an identifier that is empty or a dot segment ({id:?})"
            ),
            retryable: false,
        });
    }
    let path = dir.join(request.replay_path());
    match std::fs::read(&path) {
        Ok(body) => Ok((200, body)),
        Err(error) if error.kind() == ErrorKind::NotFound => Ok((404, Vec::new())),
        Err(error) => Err(TransportError {
            message: format!("cannot read {}: {error}", path.display()),
            retryable: false,
        }),
    }
}

impl Transport for ReplayTransport {
    fn send(&self, request: &Request) -> Result<Reply, TransportError> {
        let (status, body) = read_recorded(&self.dir, request)?;
        log::debug!("replay {} -> {status}", request.replay_path().display());
        Ok(Reply {
            status,
            body,
            retry_after: None,
            link_next: None,
            rate_limit_remaining: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_answer_200_and_missing_files_404() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hr")).unwrap();
        std::fs::write(dir.path().join("hr/42.json"), b"{\"response\":[]}").unwrap();
        let transport = ReplayTransport::new(dir.path().to_path_buf());
        let found = transport
            .send(&Request::Employee { uid: "42".into() })
            .unwrap();
        assert_eq!(
            (found.status, found.body.as_slice()),
            (200, &b"{\"response\":[]}"[..])
        );
        let missing = transport
            .send(&Request::Employee { uid: "43".into() })
            .unwrap();
        assert_eq!(missing.status, 404);
    }

    #[test]
    fn identifiers_cannot_reach_outside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("secret.json"), b"{}").unwrap();
        let dir = root.path().join("replay");
        std::fs::create_dir_all(dir.join("hr")).unwrap();
        let transport = ReplayTransport::new(dir);
        for uid in ["../../secret", "..", "../secret"] {
            match transport.send(&Request::Employee { uid: uid.into() }) {
                Ok(reply) => assert_eq!(reply.status, 404, "{uid}"),
                Err(error) => assert!(!error.retryable, "{uid}"),
            }
        }
    }
}
