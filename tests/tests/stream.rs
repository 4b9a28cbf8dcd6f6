//! Streaming a published dataset into a job of several ranks and workers, over real nodes on
//! 127.0.0.1: partitioning, order, resume, the shard cache, and shards rebuilt past lost and
//! rotten pieces.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::{collections::HashMap, path::Path, sync::Arc};
use tessera_dataset::{PublishOptions, publish, publish::list_parquet};

use arrow::array::{AsArray, RecordBatch};
use tessera_client::{Session, fetch::providers};
use tessera_formats::{Cid, Manifest, erasure::ErasureParams};
use tessera_storage_node::LocalNetwork;
use tessera_stream::{
    DatasetStream, ParquetLimits, Partition, ShardCache, StreamOptions, StreamState,
};
use tessera_tests::{read_rows, write_parquet};

const MIB: u64 = 1024 * 1024;

fn texts(batch: &RecordBatch) -> Vec<String> {
    batch
        .column_by_name("text")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|t| t.unwrap().to_string())
        .collect()
}

/// Reads a whole stream: its batches' texts, and its state after each batch.
async fn drain(
    mut stream: DatasetStream,
    stop_after: Option<usize>,
) -> (Vec<Vec<String>>, StreamState) {
    let mut batches = Vec::new();
    while stop_after.is_none_or(|n| batches.len() < n) {
        match stream.next_batch().await {
            Some(batch) => batches.push(texts(&batch.unwrap())),
            None => break,
        }
    }
    (batches, stream.state())
}

struct Job<'a> {
    session: &'a Session,
    cid: Cid,
    manifest: Arc<Manifest>,
}

impl Job<'_> {
    fn open(&self, cache: &ShardCache, options: &StreamOptions) -> DatasetStream {
        DatasetStream::open(
            self.session,
            self.cid,
            self.manifest.clone(),
            cache.clone(),
            options,
        )
        .unwrap()
    }

    /// A rank's batches with `workers` workers, interleaved as a data loader does.
    async fn rank(
        &self,
        cache: &ShardCache,
        base: &StreamOptions,
        rank: u32,
        world_size: u32,
        workers: u32,
    ) -> Vec<Vec<String>> {
        let mut per_worker = Vec::new();
        for worker in 0..workers {
            let options = StreamOptions {
                partition: Partition {
                    rank,
                    world_size,
                    worker,
                    workers,
                },
                ..base.clone()
            };
            per_worker.push(drain(self.open(cache, &options), None).await.0);
        }
        let mut out = Vec::new();
        let longest = per_worker.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            for w in &per_worker {
                if let Some(b) = w.get(i) {
                    out.push(b.clone());
                }
            }
        }
        out
    }
}

fn all_texts(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for (_, path) in list_parquet(dir).unwrap() {
        for batch in read_rows(&path) {
            all.extend(texts(&batch));
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ranks_and_workers_read_every_sample_once_resume_and_cache() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 4, 64 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (i, rows) in [1_500, 2_500, 1_000, 3_000, 2_000, 2_000]
        .into_iter()
        .enumerate()
    {
        write_parquet(
            &data.join(format!("part-{i}.parquet")),
            &format!("s{i}"),
            rows,
        );
    }
    let session = Session::join(network.bootstrap()).await.unwrap();
    let report = publish(
        &session,
        list_parquet(&data).unwrap(),
        &PublishOptions::default(),
    )
    .await
    .unwrap();
    let job = Job {
        session: &session,
        cid: report.manifest_cid,
        manifest: Arc::new(report.manifest.clone()),
    };
    let dataset = all_texts(&data);
    assert_eq!(dataset.len(), 12_000);
    let cache = ShardCache::open(&dir.path().join("cache"), 64 * MIB).unwrap();
    let base = StreamOptions {
        seed: 7,
        batch_size: 100,
        block_shards: 2,
        ..StreamOptions::default()
    };

    // 4 ranks x 2 workers: 12,000 samples in 30 batches of 100 per rank, each read once.
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut ranks = Vec::new();
    for rank in 0..4 {
        let batches = job.rank(&cache, &base, rank, 4, 2).await;
        assert_eq!(batches.len(), 30, "rank {rank}");
        assert!(batches.iter().all(|b| b.len() == 100));
        for text in batches.iter().flatten() {
            *seen.entry(text.clone()).or_default() += 1;
        }
        ranks.push(batches);
    }
    assert_eq!(seen.len(), dataset.len());
    assert!(seen.values().all(|&n| n == 1), "a sample read twice");
    assert!(dataset.iter().all(|t| seen.contains_key(t)));
    // Shuffled: the first batch of rank 0 is not the first rows of any one file.
    let first = &ranks[0][0];
    let from: std::collections::BTreeSet<usize> = first
        .iter()
        .map(|t| dataset.iter().position(|d| d == t).unwrap() / 1_000)
        .collect();
    assert!(from.len() > 1, "{from:?}");

    // The same seed and epoch give the same order; another epoch another.
    assert_eq!(job.rank(&cache, &base, 0, 4, 2).await, ranks[0]);
    let epoch1 = StreamOptions {
        epoch: 1,
        ..base.clone()
    };
    assert_ne!(job.rank(&cache, &epoch1, 0, 4, 2).await, ranks[0]);

    // Resume rank 1 (one worker) twice from saved states: the same output as one run.
    let one = |options: &StreamOptions| StreamOptions {
        partition: Partition {
            rank: 1,
            world_size: 2,
            worker: 0,
            workers: 1,
        },
        ..options.clone()
    };
    let (whole, _) = drain(job.open(&cache, &one(&base)), None).await;
    let (mut got, state) = drain(job.open(&cache, &one(&base)), Some(7)).await;
    assert_eq!(state.consumed, 700);
    let saved = serde_json::to_string(&state).unwrap();
    let state: StreamState = serde_json::from_str(&saved).unwrap();
    let resumed = state.resume(&job.cid, one(&base)).unwrap();
    let (more, state) = drain(job.open(&cache, &resumed), Some(19)).await;
    got.extend(more);
    let resumed = state.resume(&job.cid, one(&base)).unwrap();
    let (rest, state) = drain(job.open(&cache, &resumed), None).await;
    got.extend(rest);
    assert_eq!(got, whole);
    assert_eq!(state.consumed, 6_000);
    let other_seed = StreamOptions {
        seed: 8,
        ..one(&base)
    };
    assert!(state.resume(&job.cid, other_seed).is_err());

    // 2 ranks stop after 7 batches each (700 samples each); the job resumes as 3 ranks with
    // batches of 64: every sample not yet delivered is read once, and no other.
    let of = |rank, world_size, options: &StreamOptions| StreamOptions {
        partition: Partition {
            rank,
            world_size,
            worker: 0,
            workers: 1,
        },
        ..options.clone()
    };
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut saved = None;
    for rank in 0..2 {
        let (got, state) = drain(job.open(&cache, &of(rank, 2, &base)), Some(7)).await;
        got.iter()
            .flatten()
            .for_each(|t| *seen.entry(t.clone()).or_default() += 1);
        saved = Some(state);
    }
    let saved = saved.unwrap();
    let wider = StreamOptions {
        batch_size: 64,
        ..base.clone()
    };
    let mut sizes = Vec::new();
    for rank in 0..3 {
        let resumed = saved.resume(&job.cid, of(rank, 3, &wider)).unwrap();
        let (got, _) = drain(job.open(&cache, &resumed), None).await;
        sizes.push(got.iter().map(Vec::len).sum::<usize>());
        got.iter()
            .flatten()
            .for_each(|t| *seen.entry(t.clone()).or_default() += 1);
    }
    assert_eq!(seen.len(), 12_000, "{sizes:?}");
    assert!(seen.values().all(|&n| n == 1), "a sample read twice");
    assert_eq!(sizes, [3_534, 3_533, 3_533]);

    // Blocks read in segments of 700 samples (each decoding the block's shards again), and
    // resumed inside a segment: the same batches. A cap of 0 is refused.
    let segmented = StreamOptions {
        segment_samples: 700,
        ..one(&base)
    };
    let (first, state) = drain(job.open(&cache, &segmented), Some(12)).await;
    let resumed = state.resume(&job.cid, segmented.clone()).unwrap();
    let (rest, _) = drain(job.open(&cache, &resumed), None).await;
    assert_eq!([first, rest].concat(), whole);
    let none = StreamOptions {
        segment_samples: 0,
        ..one(&base)
    };
    assert!(
        DatasetStream::open(
            &session,
            job.cid,
            job.manifest.clone(),
            cache.clone(),
            &none
        )
        .is_err()
    );

    // Every shard came over the network once; the epochs after read the cache.
    let stats = cache.stats();
    assert_eq!(stats.fetched, 6, "{stats:?}");
    assert!(stats.hits > 6);

    // A cache smaller than the dataset stays within its limit.
    let bytes: u64 = report.manifest.shards.iter().map(|s| s.layout.size).sum();
    let largest = report
        .manifest
        .shards
        .iter()
        .map(|s| s.layout.size)
        .max()
        .unwrap();
    let limit = (bytes / 2).max(2 * largest);
    let small = ShardCache::open(&dir.path().join("small"), limit).unwrap();
    let (batches, _) = drain(job.open(&small, &base), None).await;
    assert_eq!(batches.len(), 120);
    let small_stats = small.stats();
    assert!(
        small_stats.peak_bytes <= limit,
        "{small_stats:?} over {limit}"
    );
    assert!(small_stats.evicted > 0, "{small_stats:?}");
    let on_disk: u64 = std::fs::read_dir(dir.path().join("small"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= limit);

    // A cached shard that rots on disk is caught and fetched again.
    let victim = cache.path_of(&report.manifest.shards[3].layout.content);
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let (batches, _) = drain(job.open(&cache, &base), None).await;
    let stats = cache.stats();
    assert_eq!((stats.corrupt, stats.fetched), (1, 7), "{stats:?}");
    let mut again: Vec<&String> = batches.iter().flatten().collect();
    again.sort();
    let mut want: Vec<&String> = dataset.iter().collect();
    want.sort();
    assert_eq!(again, want);

    // With every node gone, another epoch still streams, from the cache alone.
    drop(job);
    let cid = report.manifest_cid;
    network.shutdown().await;
    let job = Job {
        session: &session,
        cid,
        manifest: Arc::new(report.manifest.clone()),
    };
    let epoch2 = StreamOptions {
        epoch: 2,
        ..base.clone()
    };
    let (batches, _) = drain(job.open(&cache, &epoch2), None).await;
    assert_eq!(batches.len(), 120);
    assert_eq!(cache.stats().fetched, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_version_fetches_only_its_changed_shards_through_the_shared_cache() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 3, 64 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..4 {
        write_parquet(
            &data.join(format!("part-{i}.parquet")),
            &format!("v1-{i}"),
            500,
        );
    }
    let session = Session::join(network.bootstrap()).await.unwrap();
    let options = PublishOptions::default();
    let v1 = publish(&session, list_parquet(&data).unwrap(), &options)
        .await
        .unwrap();
    let stream = StreamOptions {
        batch_size: 100,
        ..StreamOptions::default()
    };
    let cache_dir = dir.path().join("cache");
    let read = |report: &tessera_dataset::PublishReport| {
        let cache = ShardCache::open(&cache_dir, 64 * MIB).unwrap();
        let stream = DatasetStream::open(
            &session,
            report.manifest_cid,
            Arc::new(report.manifest.clone()),
            cache.clone(),
            &stream,
        )
        .unwrap();
        async move { (drain(stream, None).await.0, cache.stats()) }
    };
    let (_, stats) = read(&v1).await;
    assert_eq!((stats.fetched, stats.hits), (4, 0), "{stats:?}");

    // Version 2 rewrites one file; a new reader (a new cache handle on the same directory, as
    // a new process opens it) fetches that shard alone.
    write_parquet(&data.join("part-2.parquet"), "v2-2", 500);
    let v2 = publish(&session, list_parquet(&data).unwrap(), &options)
        .await
        .unwrap();
    assert_ne!(v1.manifest_cid, v2.manifest_cid);
    let (batches, stats) = read(&v2).await;
    assert_eq!((stats.fetched, stats.hits), (1, 3), "{stats:?}");
    let changed = v2
        .manifest
        .shards
        .iter()
        .find(|s| s.name == "part-2.parquet");
    assert_eq!(stats.bytes_fetched, changed.unwrap().layout.size);
    let mut got: Vec<String> = batches.into_iter().flatten().collect();
    got.sort();
    let mut want = all_texts(&data);
    want.sort();
    assert_eq!(got, want);

    // Two processes' caches on one directory (a data loader's workers), fetching the same
    // shards at once, while a third opens it: each gets every shard, verified.
    let shared = dir.path().join("shared");
    let worker = |worker: u32| {
        let cache = ShardCache::open(&shared, 64 * MIB).unwrap();
        let options = StreamOptions {
            partition: Partition {
                rank: 0,
                world_size: 1,
                worker,
                workers: 2,
            },
            ..stream.clone()
        };
        let stream = DatasetStream::open(
            &session,
            v2.manifest_cid,
            Arc::new(v2.manifest.clone()),
            cache.clone(),
            &options,
        )
        .unwrap();
        async move { (drain(stream, None).await.0, cache.stats()) }
    };
    let opener = async {
        for _ in 0..20 {
            ShardCache::open(&shared, 64 * MIB).unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let ((a, a_stats), (b, b_stats), ()) = tokio::join!(worker(0), worker(1), opener);
    let mut both: Vec<String> = a.into_iter().chain(b).flatten().collect();
    both.sort();
    assert_eq!(both, want);
    // Each shard came over the network once; the other worker waited and found it.
    assert_eq!(
        a_stats.fetched + b_stats.fetched,
        4,
        "{a_stats:?} {b_stats:?}"
    );
    assert_eq!(a_stats.hits + b_stats.hits, 4, "{a_stats:?} {b_stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cold_stream_rebuilds_shards_past_a_lost_holder_and_a_rotten_piece() {
    let dir = tempfile::tempdir().unwrap();
    let mut network = LocalNetwork::start(&dir.path().join("nodes"), 5, 64 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (i, rows) in [1_000, 1_500, 2_000].into_iter().enumerate() {
        write_parquet(
            &data.join(format!("part-{i}.parquet")),
            &format!("r{i}"),
            rows,
        );
    }
    let session = Session::join(network.bootstrap()).await.unwrap();
    let options = PublishOptions {
        params: Some(ErasureParams::new(3, 2, 64 * 1024).unwrap()),
        ..PublishOptions::default()
    };
    let report = publish(&session, list_parquet(&data).unwrap(), &options)
        .await
        .unwrap();
    let manifest = Arc::new(report.manifest.clone());
    // Each shard's five pieces sit on the five nodes, one each.
    let mut holders = Vec::new();
    for shard in &manifest.shards {
        let mut of_shard = Vec::new();
        for piece in &shard.layout.pieces {
            let found = providers(&session, *piece).await.unwrap();
            of_shard.push(network.index_of(&found[0]).unwrap());
        }
        holders.push(of_shard);
    }

    // One node goes down, taking a piece of every shard, and a data piece of shard 1 rots on
    // another node's disk: shard 1 has m = 2 pieces left to lose, and loses both.
    let down = holders[1][0];
    let rotten_at = (0..3).find(|&p| holders[1][p] != down).unwrap();
    let rotten = manifest.shards[1].layout.pieces[rotten_at];
    let path = network
        .node(holders[1][rotten_at])
        .unwrap()
        .store
        .piece_path(&rotten);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    network.stop(down).await;

    let job = Job {
        session: &session,
        cid: report.manifest_cid,
        manifest: manifest.clone(),
    };
    let base = StreamOptions {
        batch_size: 100,
        ..StreamOptions::default()
    };
    let cache = ShardCache::open(&dir.path().join("cache"), 64 * MIB).unwrap();
    let (batches, _) = drain(job.open(&cache, &base), None).await;
    let mut got: Vec<String> = batches.into_iter().flatten().collect();
    got.sort();
    let mut want = all_texts(&data);
    want.sort();
    assert_eq!(got, want);
    let stats = cache.stats();
    assert_eq!((stats.fetched, stats.corrupt), (3, 0), "{stats:?}");
    // The rows came past the rot: its node's own check still finds the piece bad.
    let keeper = &network.node(holders[1][rotten_at]).unwrap().store;
    assert_eq!(keeper.scrub().unwrap().bad, vec![rotten]);

    // One more of shard 1's holders down: it cannot be rebuilt. The stream says which shard,
    // yields none of its rows, and caches nothing under its CID.
    let third = (0..5)
        .map(|p| holders[1][p])
        .find(|&i| i != down && i != holders[1][rotten_at])
        .unwrap();
    network.stop(third).await;
    let cache = ShardCache::open(&dir.path().join("cache-2"), 64 * MIB).unwrap();
    let mut stream = job.open(&cache, &base);
    let lost = manifest.shards[1].layout.content;
    match stream.next_batch().await {
        Some(Err(e)) => assert!(e.to_string().contains(&lost.to_string()), "{e}"),
        other => panic!("rows from a shard that could not be rebuilt: {other:?}"),
    }
    assert!(!cache.path_of(&lost).exists());
    drop(stream);
    network.shutdown().await;
}

/// A Parquet file whose one text decompresses to 4 MiB of one letter: a few KiB on disk.
fn write_bomb(path: &Path) {
    use arrow::{
        array::{Float64Array, Int64Array, StringArray},
        datatypes::{DataType, Field, Schema},
    };
    use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, true),
        Field::new("score", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![0])),
            Arc::new(StringArray::from(vec!["a".repeat(4 << 20)])),
            Arc::new(Float64Array::from(vec![0.0])),
        ],
    )
    .unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(Default::default()))
        .set_dictionary_enabled(false)
        .build();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parquet_bomb_is_refused_at_publish_and_fails_its_shard_in_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let network = LocalNetwork::start(&dir.path().join("nodes"), 3, 64 * MIB)
        .await
        .unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_parquet(&data.join("part-0.parquet"), "r0", 500);
    write_bomb(&data.join("part-1.parquet"));
    assert!(
        std::fs::metadata(data.join("part-1.parquet"))
            .unwrap()
            .len()
            < 64 * 1024
    );
    // A job (or a publisher) that allows pages of 1 MiB decompressed.
    let tight = ParquetLimits {
        max_page: MIB,
        ..ParquetLimits::default()
    };
    let session = Session::join(network.bootstrap()).await.unwrap();
    let options = PublishOptions {
        params: Some(ErasureParams::new(2, 1, 64 * 1024).unwrap()),
        ..PublishOptions::default()
    };
    let refused = publish(
        &session,
        list_parquet(&data).unwrap(),
        &PublishOptions {
            parquet_limits: tight,
            ..options.clone()
        },
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("part-1.parquet"), "{refused}");
    assert!(refused.contains("decompresses to 4194"), "{refused}");

    // Within the default limits it is published; a stream with the tight ones fails that
    // shard by name, and the job goes on (no abort, no memory spent on it).
    let report = publish(&session, list_parquet(&data).unwrap(), &options)
        .await
        .unwrap();
    let job = Job {
        session: &session,
        cid: report.manifest_cid,
        manifest: Arc::new(report.manifest.clone()),
    };
    let cache = ShardCache::open(&dir.path().join("cache"), 64 * MIB).unwrap();
    let strict = StreamOptions {
        batch_size: 100,
        parquet_limits: tight,
        ..StreamOptions::default()
    };
    // The batches before the first that needs the bomb's row come; then its error, and
    // nothing after it.
    let mut stream = job.open(&cache, &strict);
    let failed = loop {
        match stream.next_batch().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => break e.to_string(),
            None => panic!("the bomb's shard was read"),
        }
    };
    assert!(
        failed.contains("part-1.parquet") && failed.contains("decompresses to"),
        "{failed}"
    );
    assert!(stream.next_batch().await.is_none());
    drop(stream);
    // The same shards under the default limits give every row.
    let (batches, _) = drain(
        job.open(
            &cache,
            &StreamOptions {
                batch_size: 1,
                ..StreamOptions::default()
            },
        ),
        None,
    )
    .await;
    assert_eq!(batches.len(), 501);
    network.shutdown().await;
}
