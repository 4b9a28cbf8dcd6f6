//! One clear message per error. Library errors often name their cause in their own text
//! and also hand it on as their source, and layers wrap the same words again; printing the
//! whole chain would say each cause twice ("No such file or directory (os error 2): No such
//! file or directory (os error 2)"). Every front end (the CLI, the Python package) says
//! errors this way.

/// The error and its causes, each said once: a cause whose words the message already holds
/// is left out.
pub fn message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        let part = e.to_string();
        if !part.is_empty() && !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}
