//! Every target, briefly: its seeds and a few hundred mutations each run without a panic, on a
//! thread with a node's stack. The long campaign is `scripts/fuzz`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tessera_fuzz::{Budget, TARGETS, corpus_dir, fuzz, seeds_of};

#[test]
fn every_decoder_takes_its_seeds_and_their_mutations_without_a_panic() {
    for target in TARGETS {
        let target = *target;
        let report = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let seeds = seeds_of(&target, &corpus_dir());
                assert!(!seeds.is_empty());
                let budget = Budget {
                    execs: 300,
                    time: Duration::from_secs(20),
                    seed: 0x7e55e7a,
                    record: None,
                };
                fuzz(&target, &seeds, &budget)
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(report.execs > 0, "{}", target.name);
        assert!(
            report.panics.is_empty(),
            "{}: {} inputs panicked, the first: {:?}",
            target.name,
            report.panics.len(),
            String::from_utf8_lossy(&report.panics[0][..report.panics[0].len().min(300)])
        );
    }
}

#[test]
fn a_panicking_decoder_is_caught_and_its_input_kept() {
    let target = tessera_fuzz::Target {
        name: "test",
        run: |bytes| assert!(!bytes.contains(&b'!'), "a bang"),
        seeds: || vec![b"fine".to_vec(), b"bang!".to_vec()],
        dictionary: &[],
    };
    let seeds = (target.seeds)();
    let budget = Budget {
        execs: 50,
        time: Duration::from_secs(5),
        seed: 1,
        record: None,
    };
    let report = fuzz(&target, &seeds, &budget);
    assert_eq!(report.execs, 50);
    assert!(report.panics.contains(&b"bang!".to_vec()));
}
