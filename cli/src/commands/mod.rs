//! One module per subcommand.

pub(crate) mod cid;
pub(crate) mod demo;
pub(crate) mod storage_node;
