//! One clear message per error. Library errors often name their cause in their own text
//! and also hand it on as their source, and layers wrap the same words again; printing the
//! whole chain would say each cause twice ("No such file or directory (os error 2): No such
//! file or directory (os error 2)").

/// The error and its causes, each said once.
pub(crate) fn message(error: &anyhow::Error) -> String {
    tessera_formats::report::message(error.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that says its cause and hands it on too, as many do.
    #[derive(Debug)]
    struct Reading {
        source: std::io::Error,
    }

    impl std::fmt::Display for Reading {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "reading /nope: {}", self.source)
        }
    }

    impl std::error::Error for Reading {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let said = io.to_string();
        let error = anyhow::Error::new(Reading { source: io }).context("publishing /nope");
        assert_eq!(
            message(&error),
            format!("publishing /nope: reading /nope: {said}")
        );
        assert_eq!(message(&error).matches(&said).count(), 1);
    }

    #[test]
    fn a_wrapper_that_repeats_its_cause_is_said_once() {
        let inner = anyhow::anyhow!("cid: a manifest is a DAG-CBOR block");
        let outer = inner.context("cid: a manifest is a DAG-CBOR block");
        assert_eq!(message(&outer), "cid: a manifest is a DAG-CBOR block");
        let plain = anyhow::anyhow!("no such dataset").context("resolving x");
        assert_eq!(message(&plain), "resolving x: no such dataset");
    }
}
