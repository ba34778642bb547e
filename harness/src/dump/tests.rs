//! Unit tests of the file-table record decoder and of the stream checks it shares.

use std::mem::size_of;
use std::path::Path;

use super::stream::test_records::{bytes_of, end as end_rec, header};
use super::*;
use crate::records::{crib_rec_file, crib_rec_path, CRIB_FILE_SOCK, CRIB_REC_FILE, CRIB_REC_PATH};

fn file_rec(seq: u32, fd: u32) -> Vec<u8> {
    let mut f = crib_rec_file {
        hdr: header(CRIB_REC_FILE, size_of::<crib_rec_file>(), seq),
        fd,
        kind: CRIB_FILE_SOCK,
        sk_family: libc::AF_UNIX as u16,
        sk_type: libc::SOCK_STREAM as u16,
        ..Default::default()
    };
    for (d, s) in f.anon_name.iter_mut().zip(b"[x]\0") {
        *d = *s as _;
    }
    bytes_of(&f)
}

#[test]
fn complete_dump_decodes() {
    let recs = vec![file_rec(0, 3), file_rec(1, 100_000), end_rec(2, 0, 2, 0)];
    let files = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[1].fd, 100_000);
    assert_eq!(files[0].kind, FileKind::Socket);
    assert_eq!(files[0].sock.unwrap().family, libc::AF_UNIX as u16);
    assert_eq!(files[0].anon_name.as_deref(), Some("[x]"));
}

#[test]
fn truncated_and_unknown_records_are_rejected() {
    let mut short = file_rec(0, 3);
    short.truncate(40);
    assert!(matches!(
        decode_stream(&[short]),
        Err(DumpError::BadRecord { index: 0, .. })
    ));
    let mut unknown = end_rec(0, 0, 0, 0);
    unknown[0] = 0x7f;
    let err = decode_stream(&[unknown]).unwrap_err().to_string();
    assert!(err.contains("unknown record type 127"), "{err}");
    // header size disagrees with the ring buffer record length
    let mut padded = end_rec(0, 0, 0, 0);
    padded.extend_from_slice(&[0; 8]);
    assert!(decode_stream(&[padded]).is_err());
    // a lost record shows as a sequence gap
    assert!(decode_stream(&[file_rec(0, 1), file_rec(2, 2)]).is_err());
    // nothing may follow the end record
    assert!(decode_stream(&[end_rec(0, 0, 0, 0), file_rec(1, 1)]).is_err());
}

#[test]
fn partial_dumps_are_never_complete() {
    // dropped records
    let raw = decode_stream(&[file_rec(0, 3), end_rec(1, -28, 1, 5)]).unwrap();
    let err = finish(7, -28, raw).unwrap_err();
    assert!(err.to_string().contains("5 of 6 records"), "{err}");
    // no end record
    let raw = decode_stream(&[file_rec(0, 3)]).unwrap();
    assert!(matches!(
        finish(7, 0, raw),
        Err(DumpError::Incomplete { .. })
    ));
    // count mismatch
    let raw = decode_stream(&[file_rec(0, 3), end_rec(1, 0, 2, 0)]).unwrap();
    assert!(matches!(
        finish(7, 0, raw),
        Err(DumpError::Incomplete { .. })
    ));
    // return value and end record disagree
    let raw = decode_stream(&[end_rec(0, -13, 0, 0)]).unwrap();
    assert!(matches!(
        finish(7, 0, raw),
        Err(DumpError::Incomplete { .. })
    ));
    // a walk the kfuncs stopped after some records: never complete, and it says why
    let raw = decode_stream(&[file_rec(0, 3), end_rec(1, -13, 1, 0)]).unwrap();
    let err = finish(7, -13, raw).unwrap_err();
    assert!(
        matches!(&err, DumpError::Stopped { errno: 13, files, .. } if files.len() == 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("stopped after 1 fds"), "{err}");
    // any other error after some records
    let raw = decode_stream(&[file_rec(0, 3), end_rec(1, -5, 1, 0)]).unwrap();
    assert!(matches!(
        finish(7, -5, raw),
        Err(DumpError::Incomplete { .. })
    ));
}

#[test]
fn target_errors_are_translated() {
    let raw = decode_stream(&[end_rec(0, -libc::ESRCH, 0, 0)]).unwrap();
    let err = finish(4242, -libc::ESRCH, raw).unwrap_err();
    assert_eq!(err.errno(), Some(libc::ESRCH));
    assert!(err
        .to_string()
        .contains("no process with pid 4242 in this pid namespace"));
    let raw = decode_stream(&[end_rec(0, -libc::EACCES, 0, 0)]).unwrap();
    let err = finish(1, -libc::EACCES, raw).unwrap_err();
    assert_eq!(err.errno(), Some(libc::EACCES));
    assert!(err.to_string().starts_with("permission denied"), "{err}");
}

#[test]
fn a_kernel_without_the_path_kfunc_says_so() {
    let raw = decode_stream(&[end_rec(0, -libc::EOPNOTSUPP, 0, 0)]).unwrap();
    let err = finish(7, -libc::EOPNOTSUPP, raw).unwrap_err().to_string();
    assert!(
        err.contains("lack bpf_iter_task_file_get_path()") && err.contains("scripts/build"),
        "{err}"
    );
}

#[test]
fn path_records_attach_to_their_file() {
    fn path_rec(seq: u32, fd: u32, error: i32, path: &[u8]) -> Vec<u8> {
        let fixed = std::mem::offset_of!(crib_rec_path, path);
        let mut v = vec![0u8; fixed];
        v[0..2].copy_from_slice(&(CRIB_REC_PATH as u16).to_ne_bytes());
        v[2..4].copy_from_slice(&((fixed + path.len()) as u16).to_ne_bytes());
        v[4..8].copy_from_slice(&seq.to_ne_bytes());
        v[8..12].copy_from_slice(&fd.to_ne_bytes());
        v[12..16].copy_from_slice(&error.to_ne_bytes());
        v.extend_from_slice(path);
        v
    }
    let recs = vec![
        file_rec(0, 3),
        path_rec(1, 3, 0, b"/tmp/a (deleted)\0"),
        file_rec(2, 4),
        path_rec(3, 4, -libc::ENAMETOOLONG, b""),
        end_rec(4, 0, 4, 0),
    ];
    let files = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
    assert_eq!(
        files[0].path.as_deref(),
        Some(Path::new("/tmp/a (deleted)"))
    );
    assert_eq!(
        (files[1].path.as_deref(), files[1].path_errno),
        (None, libc::ENAMETOOLONG)
    );
    // a path for another fd, a path without its NUL, two paths for one file
    for bad in [
        vec![file_rec(0, 3), path_rec(1, 4, 0, b"/x\0")],
        vec![file_rec(0, 3), path_rec(1, 3, 0, b"/x")],
        vec![
            file_rec(0, 3),
            path_rec(1, 3, 0, b"/x\0"),
            path_rec(2, 3, 0, b"/y\0"),
        ],
    ] {
        assert!(decode_stream(&bad).is_err());
    }
}

#[test]
fn dev_encodings() {
    // glibc: makedev(8, 0x12345) -> kernel MAJOR << 20 | MINOR
    let user = libc::makedev(8, 0x12345);
    assert_eq!(kdev_from_user(user), (8 << 20) | 0x12345);
    assert_eq!(kdev_split((8 << 20) | 0x12345), (8, 0x12345));
}
