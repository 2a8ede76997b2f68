//! The deploy files (issue 17): the systemd unit passes `systemd-analyze
//! verify` where that tool exists (it needs systemd's own tooling, which a
//! container may lack; then the test says so and checks the file's keys).

use std::path::Path;

#[test]
fn the_systemd_unit_is_valid_and_hardened() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/peergate.service"),
    )
    .expect("deploy/peergate.service");
    for key in [
        "DynamicUser=yes",
        "StateDirectory=peergate",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "MemoryMax=",
        "KillSignal=SIGTERM",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(key), "the unit sets {key}");
    }
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("SKIPPED systemd-analyze verify: /usr/bin/systemd-analyze is not installed");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at ours.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("peergate.service");
    let ours = unit.replace("/usr/local/bin/peergate", env!("CARGO_BIN_EXE_peergate"));
    std::fs::write(&copy, ours).unwrap();
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(
        !said.contains("peergate.service:"),
        "no warnings about the unit: {said}"
    );
}
