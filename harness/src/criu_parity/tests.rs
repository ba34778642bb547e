use super::*;

/// What `crit decode` printed for a demo process in a 7.3 guest (trimmed to four fds: a
/// regular file at offset 5, a deleted file, a unix socket with 11 bytes queued, an
/// established TCP socket with 5).
fn images() -> criu::Images {
    let mut i = criu::Images::default();
    for (name, json) in [
        (
            "fdinfo-2.img",
            r#"{"magic": "FDINFO", "entries": [
                {"id": 19, "flags": 0, "type": "REG", "fd": 3},
                {"id": 20, "flags": 1, "type": "REG", "fd": 4},
                {"id": 24, "flags": 0, "type": "UNIXSK", "fd": 8},
                {"id": 26, "flags": 0, "type": "INETSK", "fd": 10}]}"#,
        ),
        (
            "files.img",
            r#"{"magic": "FILES", "entries": [
                {"type": "REG", "id": 19, "reg": {"id": 19, "flags": 32770, "pos": 5,
                 "name": "/tmp/ex/demo data", "size": 13, "mode": 33188}},
                {"type": "REG", "id": 20, "reg": {"id": 20, "flags": 32769, "pos": 0,
                 "name": "/tmp/ex/gone", "size": 0, "mode": 33188}},
                {"type": "UNIXSK", "id": 24, "usk": {"id": 24, "ino": 1141, "type": 1,
                 "state": 1, "flags": 2, "backlog": 0, "peer": 1140, "name": ""}},
                {"type": "INETSK", "id": 26, "isk": {"id": 26, "ino": 1143, "family": 2,
                 "type": 1, "proto": 6, "state": 1, "src_port": 59124, "dst_port": 59343,
                 "flags": 2, "backlog": 0, "src_addr": [16777343], "dst_addr": [16777343]}}]}"#,
        ),
        (
            "remap-fpath.img",
            r#"{"magic": "REMAP_FPATH", "entries": [
                {"orig_id": 20, "remap_id": 1, "remap_type": "GHOST"}]}"#,
        ),
        (
            "ghost-file-1.img",
            r#"{"magic": "GHOST_FILE", "entries": [{"uid": 0, "gid": 0, "mode": 33188,
                "dev": 27, "ino": 4, "extra": ""}]}"#,
        ),
        (
            "sk-queues.img",
            r#"{"magic": "SK_QUEUES", "entries": [{"id_for": 24, "length": 11,
                "extra": "dXV1dXV1dXV1dXU=\n"}]}"#,
        ),
        (
            "tcp-stream-477.img",
            r#"{"magic": "TCP_STREAM", "entries": [{"inq_len": 5, "inq_seq": 3587728395,
                "outq_len": 0, "outq_seq": 2963354714, "unsq_len": 0, "snd_wnd": 65536,
                "extra": {"inq": "c3Nzc3M=\n", "outq": ""}}]}"#,
        ),
    ] {
        i.insert(name, json).expect(name);
    }
    i
}

/// crib dump's JSON of the same four fds.
const CRIB: &str = r#"{"schema": "crib-dump", "version": 1, "pid": 81, "files": [
 {"fd": 3, "kind": "reg", "flags": 32770, "cloexec": false, "mode": "rw", "f_mode": 73367583,
  "pos": 5, "mnt_id": 32, "dev": "0:27", "ino": 3, "i_mode": 33188,
  "path": "/tmp/ex/demo data"},
 {"fd": 4, "kind": "reg", "flags": 557057, "cloexec": true, "mode": "w", "f_mode": 73236510,
  "pos": 0, "mnt_id": 32, "dev": "0:27", "ino": 4, "i_mode": 33188,
  "path": "/tmp/ex/gone (deleted)"},
 {"fd": 8, "kind": "sock", "flags": 2, "cloexec": false, "mode": "rw", "f_mode": 204341251,
  "pos": 0, "mnt_id": 13, "dev": "0:11", "ino": 1141, "i_mode": 49663,
  "path": "socket:[1141]", "socket": {"family": "unix", "type": "stream", "protocol": 0,
  "state": "ESTABLISHED", "local": null, "remote": null, "recv_q": 11, "send_q": 0,
  "queues": {"unix-recv": {"packets": 1, "bytes": 11}}}},
 {"fd": 10, "kind": "sock", "flags": 2, "cloexec": false, "mode": "rw", "f_mode": 204341251,
  "pos": 0, "mnt_id": 13, "dev": "0:11", "ino": 1143, "i_mode": 49663,
  "path": "socket:[1143]", "socket": {"family": "inet", "type": "stream", "protocol": 6,
  "state": "ESTABLISHED", "local": "127.0.0.1:59124", "remote": "127.0.0.1:59343",
  "recv_q": 5, "send_q": 0, "queues": {"tcp-recv": {"packets": 1, "bytes": 5}}}}]}"#;

#[test]
fn criu_images_give_each_fd_its_fields() {
    let v = images().view().unwrap();
    let f = |fd: u32, k: &str| v[&fd].get(k).cloned().unwrap_or_default();
    assert_eq!(f(3, "path"), "/tmp/ex/demo data");
    assert_eq!(f(3, "pos"), "5");
    assert_eq!(f(3, "flags"), "0100002");
    assert_eq!(f(3, "kind"), "reg");
    assert_eq!(f(3, "criu.reg.size"), "13");
    assert!(
        !v[&3].contains_key("ino"),
        "CRIU keeps no inode of a linked file"
    );
    assert_eq!(f(4, "path"), "/tmp/ex/gone (deleted)");
    assert_eq!(f(4, "cloexec"), "true");
    assert_eq!((f(4, "ino").as_str(), f(4, "dev").as_str()), ("4", "0:27"));
    assert_eq!(f(8, "queue.unix-recv.bytes"), "11");
    assert_eq!(f(8, "sock.state"), "ESTABLISHED");
    assert_eq!(f(8, "criu.usk.peer"), "1140");
    assert_eq!(f(10, "sock.local"), "127.0.0.1:59124");
    assert_eq!(f(10, "sock.remote"), "127.0.0.1:59343");
    assert_eq!(f(10, "queue.tcp-recv.bytes"), "5");
    assert_eq!(f(10, "criu.tcp-stream.snd_wnd"), "65536");
}

#[test]
fn the_same_process_agrees_and_one_sided_fields_are_counted() {
    let c = compare(&images().view().unwrap(), &crib::view(CRIB).unwrap());
    assert_eq!(c.check(&[]), Ok(()), "{:?}", c.mismatches);
    assert_eq!(c.fields["pos"].agree, 2);
    assert_eq!(c.fields["path"].agree, 2);
    assert_eq!(c.fields["ino"].agree, 3);
    assert_eq!(c.fields["ino"].only_crib, 1);
    assert_eq!(c.fields["mnt_id"].only_crib, 4);
    assert_eq!(c.fields["criu.reg.size"].only_criu, 2);
    assert_eq!(c.fields["queue.tcp-recv.bytes"].agree, 1);
    assert!(c.table().contains("mnt_id"));
}

#[test]
fn a_differing_field_fails_naming_the_fd_field_and_both_values() {
    let crib = CRIB.replace(r#""pos": 5,"#, r#""pos": 6,"#);
    let c = compare(&images().view().unwrap(), &crib::view(&crib).unwrap());
    let err = c.check(&[]).unwrap_err();
    assert!(
        err.starts_with(r#"fd 3: pos: CRIU says "5", crib dump says "6""#),
        "{err}"
    );
    // A queue size too.
    let crib = CRIB.replace(r#""packets": 1, "bytes": 5"#, r#""packets": 1, "bytes": 4"#);
    let err = compare(&images().view().unwrap(), &crib::view(&crib).unwrap())
        .check(&[])
        .unwrap_err();
    assert!(err.contains("fd 10: queue.tcp-recv.bytes"), "{err}");
}

#[test]
fn known_disagreements_must_match_and_must_still_occur() {
    let crib = CRIB.replace(r#""pos": 5,"#, r#""pos": 6,"#);
    let c = compare(&images().view().unwrap(), &crib::view(&crib).unwrap());
    let pos = Known {
        field: "pos",
        kind: "reg",
        why: "test",
    };
    assert_eq!(c.check(&[pos]), Ok(()));
    let wrong_kind = Known {
        kind: "sock",
        ..pos
    };
    assert!(c.check(&[wrong_kind]).is_err());
    let agreeing = compare(&images().view().unwrap(), &crib::view(CRIB).unwrap());
    let err = agreeing.check(&[pos]).unwrap_err();
    assert!(err.contains("no longer occurs"), "{err}");
}

#[test]
fn different_fd_sets_fail() {
    let mut crib = crib::view(CRIB).unwrap();
    crib.remove(&8);
    let err = compare(&images().view().unwrap(), &crib)
        .check(&[])
        .unwrap_err();
    assert!(err.contains("only CRIU lists [8]"), "{err}");
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(crib::view("{}").is_err());
    let wrong = CRIB.replace(r#""version": 1"#, r#""version": 2"#);
    assert!(crib::view(&wrong)
        .unwrap_err()
        .to_string()
        .contains("version 2"));
    let mut i = criu::Images::default();
    assert!(i.insert("files.img", "not json").is_err());
    assert!(i.view().is_err(), "no files.img");
    let mut i = images();
    i.insert("files.img", r#"{"magic": "FDINFO", "entries": []}"#)
        .unwrap();
    assert!(i.view().unwrap_err().to_string().contains("magic"));
}

#[test]
fn missing_criu_says_to_run_setup() {
    let empty = tempfile::tempdir().unwrap();
    let err = tools::locate_in(empty.path()).unwrap_err().to_string();
    assert!(err.contains("scripts/setup"), "{err}");
    assert!(err.contains("tools/criu-4.2.1/bin/criu"), "{err}");
}
