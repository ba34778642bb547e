//! Unit tests of the socket record decoder: complete dumps, truncated ones, errors.

use std::mem::{offset_of, size_of};

use super::*;
use crate::dump::stream::test_records::{bytes_of, end as end_rec, header};
use crate::records::{crib_rec_sock, crib_sock_item, CRIB_REC_SOCK, CRIB_SOCK_SLACK};

const FIXED: usize = size_of::<crib_rec_sock>();
const HEAD: usize = size_of::<crib_sock_item>();

/// A socket record as dump_socks.bpf.c writes it: the fixed part, then each packet's header and
/// bytes, padded to 8 with stale bytes, then the slack the program reserves past the packets.
fn sock(seq: u32, fd: u32, pkts: &[(Queue, &[u8])]) -> Vec<u8> {
    let mut r = crib_rec_sock {
        hdr: header(CRIB_REC_SOCK, FIXED, seq),
        fd,
        family: libc::AF_UNIX as u16,
        nr_items: pkts.len() as u32,
        ..Default::default()
    };
    let mut area = Vec::new();
    for (i, &(q, b)) in pkts.iter().enumerate() {
        r.nr[q as usize] += 1;
        r.bytes[q as usize] += b.len() as u64;
        area.extend(bytes_of(&crib_sock_item {
            index: i as u32,
            queue: q as u32,
            len: b.len() as u32,
            ..Default::default()
        }));
        area.extend_from_slice(b);
        area.resize(area.len().next_multiple_of(8), 0xee);
    }
    r.items_size = area.len() as u32;
    let mut v = bytes_of(&r);
    v.extend(area);
    if !pkts.is_empty() {
        v.resize(v.len() + CRIB_SOCK_SLACK as usize, 0xee);
    }
    v
}

fn set_u32(rec: &mut [u8], at: usize, val: u32) {
    rec[at..at + 4].copy_from_slice(&val.to_ne_bytes());
}

fn end(seq: u32, error: i32) -> Vec<u8> {
    end_rec(seq, error, seq, 0)
}

fn decode_err(recs: &[Vec<u8>]) -> String {
    match decode_stream(recs) {
        Ok(raw) => panic!("decoded: {raw:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn complete_socket_dump_decodes() {
    let big = vec![7u8; 4097];
    let recs = vec![
        sock(0, 5, &[(Queue::UnixRecv, b"abc"), (Queue::UnixRecv, &big)]),
        sock(1, 6, &[]),
        end(2, 0),
    ];
    let socks = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
    assert_eq!(socks.len(), 2);
    let s = &socks[0];
    assert_eq!(s.data(&s.items[0]), b"abc");
    assert_eq!(s.data(&s.items[1]), &big[..]);
    // The padding after "abc" is not data.
    assert_eq!(s.queue_data(Queue::UnixRecv).len(), 3 + 4097);
    assert!(socks[1].items.is_empty());
}

#[test]
fn empty_packets_and_queues_in_order() {
    let recs = vec![
        sock(
            0,
            5,
            &[
                (Queue::TcpRecv, b""),
                (Queue::TcpRecv, b"12345678"),
                (Queue::TcpWrite, b"x"),
            ],
        ),
        end(1, 0),
    ];
    let socks = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
    let s = &socks[0];
    assert_eq!(s.items.len(), 3);
    assert!(s.data(&s.items[0]).is_empty());
    assert_eq!(s.queue_data(Queue::TcpRecv), b"12345678");
    assert_eq!(s.queue_data(Queue::TcpWrite), b"x");
    // a queue out of enum order
    let recs = vec![
        sock(0, 5, &[(Queue::TcpWrite, b"x"), (Queue::TcpRecv, b"y")]),
        end(1, 0),
    ];
    assert!(decode_err(&recs).contains("item 1 (tcp-recv) after item 0 (tcp-write)"));
}

#[test]
fn in_ring_decoding_keeps_where_each_packet_is_and_checks_the_same() {
    let big = vec![7u8; 4097];
    let recs = vec![
        sock(0, 5, &[(Queue::UnixRecv, b"abc"), (Queue::UnixRecv, &big)]),
        end(1, 0),
    ];
    let mut d = SockDecoder::<InRing>::with_store(false);
    for r in &recs {
        d.record(r);
    }
    let socks = d.judge(1, 0).unwrap();
    let q = socks[0].queue_store(Queue::UnixRecv);
    assert_eq!(q.len(), 3 + 4097);
    // Each packet's bytes where they are in its record, not a copy.
    let second = FIXED + HEAD + 8 + HEAD;
    let want = vec![
        (recs[0][FIXED + HEAD..].as_ptr() as usize, 3),
        (recs[0][second..].as_ptr() as usize, 4097),
    ];
    assert_eq!(q.chunks, want);
    // The same checks as the copying decoder: a record cut short is refused.
    let mut cut = recs[0].clone();
    cut.truncate(second + 100);
    let mut d = SockDecoder::<InRing>::with_store(false);
    d.record(&cut);
    d.record(&recs[1]);
    let err = d.judge(1, 0).unwrap_err().to_string();
    assert!(err.contains("bytes of packets announced"), "{err}");
}

#[test]
fn missing_bytes_items_and_bad_totals_are_rejected() {
    let good = sock(0, 5, &[(Queue::UnixRecv, b"abcd")]);
    let nr_items = offset_of!(crib_rec_sock, nr_items);
    let items_size = offset_of!(crib_rec_sock, items_size);
    // a packet announced that is not there
    let mut r = good.clone();
    set_u32(&mut r, nr_items, 2);
    let err = decode_err(&[r, end(1, 0)]);
    assert!(err.contains("packet 1 of 2: its header runs past"), "{err}");
    // bytes of packets that no packet header announces
    let mut r = good.clone();
    set_u32(&mut r, items_size, (HEAD + 16) as u32);
    let err = decode_err(&[r, end(1, 0)]);
    assert!(
        err.contains("8 bytes of packets left after its 1 packets"),
        "{err}"
    );
    // a packet whose bytes run past the packets
    let mut r = good.clone();
    set_u32(&mut r, FIXED + offset_of!(crib_sock_item, len), 9);
    let err = decode_err(&[r, end(1, 0)]);
    assert!(err.contains("its 9 bytes run past"), "{err}");
    // totals that disagree with the packets
    let mut r = good.clone();
    r[offset_of!(crib_rec_sock, bytes) + 8 * Queue::UnixRecv as usize] = 5;
    let err = decode_err(&[r, end(1, 0)]);
    assert!(
        err.contains("snapshot info says 1 packets / 5 bytes, the items are 1 / 4"),
        "{err}"
    );
    // a packet out of order, an unknown queue
    let mut r = good.clone();
    set_u32(&mut r, FIXED + offset_of!(crib_sock_item, index), 3);
    assert!(decode_err(&[r, end(1, 0)]).contains("packet 0 says it is packet 3"));
    let mut r = good.clone();
    set_u32(&mut r, FIXED + offset_of!(crib_sock_item, queue), 99);
    assert!(decode_err(&[r, end(1, 0)]).contains("unknown queue 99"));
    // more bytes after the packets than the program reserves
    let mut r = good.clone();
    r.extend_from_slice(&[0; 64]);
    let err = decode_err(&[r, end(1, 0)]);
    assert!(
        err.contains("more than the 2055 the program reserves"),
        "{err}"
    );
    // a fixed part of another size, a record shorter than it
    let mut r = good.clone();
    r[2..4].copy_from_slice(&((FIXED - 8) as u16).to_ne_bytes());
    assert!(decode_err(&[r, end(1, 0)]).contains("from another ABI"));
    let mut r = good.clone();
    r.truncate(FIXED - 8);
    r[2..4].copy_from_slice(&((FIXED - 8) as u16).to_ne_bytes());
    assert!(decode_err(&[r, end(1, 0)]).contains("shorter than its"));
    // A socket record may be longer than its 16-bit hdr.size; no other record may.
    let mut e = end(1, 0);
    e.push(0);
    assert!(decode_err(&[good, e]).contains("header says"));
}

#[test]
fn a_socket_with_more_than_64k_of_packets_decodes() {
    let big = vec![1u8; 100_000];
    let recs = vec![sock(0, 5, &[(Queue::TcpRecv, &big)]), end(1, 0)];
    assert!(recs[0].len() > usize::from(u16::MAX));
    let socks = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
    assert_eq!(socks[0].queue_data(Queue::TcpRecv), &big[..]);
}

#[test]
fn in_place_decoding_keeps_the_end_of_a_failed_run() {
    // records lost to a full ring buffer: the run is judged by its end record, not the gap
    let mut d = SockDecoder::new(false);
    for r in [
        sock(0, 5, &[(Queue::UnixRecv, b"abcd")]),
        end_rec(2, -libc::ENOSPC, 2, 1),
    ] {
        d.record(&r);
    }
    let err = d.judge(1, -libc::ENOSPC).unwrap_err().to_string();
    assert!(err.contains("1 records did not fit"), "{err}");
}

#[test]
fn summaries_take_socket_records_only() {
    let mut d = SockDecoder::new(true);
    let mut s = crib_rec_sock {
        hdr: header(CRIB_REC_SOCK, FIXED, 0),
        fd: 4,
        ..Default::default()
    };
    s.nr[Queue::TcpRecv as usize] = 2;
    s.bytes[Queue::TcpRecv as usize] = 10;
    d.record(&bytes_of(&s));
    d.record(&end(1, 0));
    let socks = d.judge(1, 0).unwrap();
    assert_eq!(socks[0].sock.bytes_of(Queue::TcpRecv), 10);
    let mut d = SockDecoder::new(true);
    d.record(&sock(0, 4, &[(Queue::TcpRecv, b"12345")]));
    let err = d.judge(1, 0).unwrap_err().to_string();
    assert!(err.contains("packets in a summary"), "{err}");
}

#[test]
fn refused_sockets_and_failed_runs() {
    let s = crib_rec_sock {
        hdr: header(CRIB_REC_SOCK, FIXED, 0),
        fd: 9,
        queue_err: -libc::EOPNOTSUPP,
        ..Default::default()
    };
    let raw = decode_stream(&[bytes_of(&s), end(1, 0)]).unwrap();
    let socks = finish(1, 0, raw).unwrap();
    assert_eq!(socks[0].sock.queue_err, -libc::EOPNOTSUPP);
    let mut bad = s;
    bad.nr_items = 1;
    let err = decode_err(&[bytes_of(&bad), end(1, 0)]);
    assert!(
        err.contains("queue error -95 but 1 packets announced"),
        "{err}"
    );
    let raw = decode_stream(&[bytes_of(&s), end(1, -libc::ENOSPC)]).unwrap();
    let err = finish(1, -libc::ENOSPC, raw).unwrap_err().to_string();
    assert!(err.contains("ENOSPC"), "{err}");
    assert!(finish(1, 0, decode_stream(&[bytes_of(&s)]).unwrap()).is_err());
}
