//! Every example in pipelines/examples validates and passes its own `tests:` block, so the
//! examples users copy from always work.

use std::path::Path;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_validates_and_passes_its_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the examples folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected at least three examples, found {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let pipeline = match brook_pipelines::load(file) {
            Ok(p) => p,
            Err(d) => {
                failures.push(format!("{} does not validate:\n{d}", file.display()));
                continue;
            }
        };
        assert!(!pipeline.tests.is_empty(), "{} has no tests: block", file.display());
        for outcome in brook_pipelines::testing::run_tests(&pipeline).await.expect("tests run") {
            if !outcome.passed() {
                failures.push(format!(
                    "{} :: {}: {:?}",
                    file.display(),
                    outcome.name,
                    outcome.failures
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
