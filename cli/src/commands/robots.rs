//! `tessera robots check FILE --agent NAME URL...`: what a robots.txt says of each URL for one
//! crawler, and which line decided, so an operator can see why a page was skipped.

use std::{fs::File, io::Read as _, path::PathBuf};

use anyhow::Context as _;
use tessera_scraper_node::{
    canonical::canonicalize,
    robots::{MAX_ROBOTS_BYTES, Robots},
};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Check URLs against a robots.txt file.
    Check {
        /// The robots.txt file.
        file: PathBuf,
        /// The crawler's user agent (its product token is what robots.txt names).
        #[arg(long)]
        agent: String,
        /// URLs (or paths starting with `/`) to check.
        #[arg(required = true)]
        urls: Vec<String>,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let Command::Check { file, agent, urls } = args.command;
    let mut bytes = Vec::new();
    File::open(&file)
        .and_then(|f| f.take(MAX_ROBOTS_BYTES as u64).read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", file.display()))?;
    let robots = Robots::parse(&bytes);
    for url in &urls {
        let path = if url.starts_with('/') {
            url.clone()
        } else {
            let url = canonicalize(url, None).with_context(|| format!("checking {url}"))?;
            match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            }
        };
        let verdict = robots.check(&agent, &path);
        let word = if verdict.allowed { "allow" } else { "deny " };
        let why = match &verdict.rule {
            Some(rule) => format!("line {}: {}", rule.line, rule.text),
            None => "no rule matches".into(),
        };
        println!("{word}  {url}  ({why})");
    }
    if let Some(delay) = robots.crawl_delay(&agent) {
        println!("crawl-delay {delay} s for {agent}");
    }
    Ok(())
}
