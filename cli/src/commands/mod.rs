//! One module per subcommand.

pub(crate) mod cid;
pub(crate) mod demo;
