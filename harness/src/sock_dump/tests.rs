//! Unit tests of the socket record decoder: complete dumps, truncated ones, errors.

use std::mem::size_of;

use super::*;
use crate::dump::stream::test_records::{bytes_of, end as end_rec, header};
use crate::records::{
    crib_rec_sock, crib_rec_sock_data, crib_rec_sock_item, CRIB_REC_SOCK, CRIB_REC_SOCK_DATA,
    CRIB_REC_SOCK_ITEM, CRIB_SOCK_CHUNK,
};

fn sock(seq: u32, fd: u32, q: Queue, lens: &[u32]) -> Vec<u8> {
    let mut r = crib_rec_sock {
        hdr: header(CRIB_REC_SOCK, size_of::<crib_rec_sock>(), seq),
        fd,
        family: libc::AF_UNIX as u16,
        nr_items: lens.len() as u32,
        ..Default::default()
    };
    r.nr[q as usize] = lens.len() as u32;
    r.bytes[q as usize] = lens.iter().map(|&l| u64::from(l)).sum();
    bytes_of(&r)
}

fn item(seq: u32, fd: u32, index: u32, q: Queue, len: u32) -> Vec<u8> {
    bytes_of(&crib_rec_sock_item {
        hdr: header(CRIB_REC_SOCK_ITEM, size_of::<crib_rec_sock_item>(), seq),
        fd,
        index,
        queue: q as u32,
        len,
        ..Default::default()
    })
}

/// A chunk record: its fixed part, then its bytes in their room (`chunk_room`), the rest of
/// the room stale bytes as the ring buffer leaves them.
fn data(seq: u32, fd: u32, index: u32, offset: u32, bytes: &[u8]) -> Vec<u8> {
    data_in_room(
        seq,
        fd,
        index,
        offset,
        bytes,
        chunk_room(bytes.len() as u32),
    )
}

fn data_in_room(seq: u32, fd: u32, index: u32, offset: u32, bytes: &[u8], room: usize) -> Vec<u8> {
    let size = size_of::<crib_rec_sock_data>() + room;
    let mut v = bytes_of(&crib_rec_sock_data {
        hdr: header(CRIB_REC_SOCK_DATA, size, seq),
        fd,
        index,
        offset,
        len: bytes.len() as u32,
    });
    v.extend_from_slice(bytes);
    v.resize(size, 0xee);
    v
}

#[test]
fn chunk_rooms_are_powers_of_two_from_64_to_the_chunk() {
    let rooms: Vec<usize> = [
        1,
        63,
        64,
        65,
        100,
        2048,
        2049,
        CRIB_SOCK_CHUNK - 1,
        CRIB_SOCK_CHUNK,
    ]
    .iter()
    .map(|&n| chunk_room(n))
    .collect();
    assert_eq!(rooms, [64, 64, 64, 128, 128, 2048, 4096, 4096, 4096]);
}

/// The stale bytes after a chunk's payload are not data; a room that is not the payload's
/// (too small, or a size the program never reserves) is a broken record, not data.
#[test]
fn chunk_room_padding_is_dropped_and_a_wrong_room_is_refused() {
    let recs = vec![
        sock(0, 5, Queue::UnixRecv, &[3]),
        item(1, 5, 0, Queue::UnixRecv, 3),
        data(2, 5, 0, 0, b"abc"),
        end(3, 0),
    ];
    let socks = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
    assert_eq!(socks[0].queue_data(Queue::UnixRecv), b"abc");
    for room in [3, 32, 128] {
        let recs = vec![
            sock(0, 5, Queue::UnixRecv, &[3]),
            item(1, 5, 0, Queue::UnixRecv, 3),
            data_in_room(2, 5, 0, 0, b"abc", room),
            end(3, 0),
        ];
        let err = decode_stream(&recs).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{room} bytes of room says it carries 3")),
            "{err}"
        );
    }
}

fn end(seq: u32, error: i32) -> Vec<u8> {
    end_rec(seq, error, seq, 0)
}

#[test]
fn complete_socket_dump_decodes() {
    let big = vec![7u8; CRIB_SOCK_CHUNK as usize];
    let recs = vec![
        sock(0, 5, Queue::UnixRecv, &[3, CRIB_SOCK_CHUNK + 1]),
        item(1, 5, 0, Queue::UnixRecv, 3),
        data(2, 5, 0, 0, b"abc"),
        item(3, 5, 1, Queue::UnixRecv, CRIB_SOCK_CHUNK + 1),
        data(4, 5, 1, 0, &big),
        data(5, 5, 1, CRIB_SOCK_CHUNK, b"z"),
        end(6, 0),
    ];
    let socks = finish(1, 0, decode_stream(&recs).unwrap()).unwrap();
    assert_eq!(socks.len(), 1);
    let s = &socks[0];
    assert_eq!(s.data(&s.items[0]), b"abc");
    assert_eq!(s.data(&s.items[1]).len(), CRIB_SOCK_CHUNK as usize + 1);
    assert_eq!(s.data(&s.items[1])[CRIB_SOCK_CHUNK as usize], b'z');
    assert_eq!(
        s.queue_data(Queue::UnixRecv).len(),
        4 + CRIB_SOCK_CHUNK as usize
    );
}

#[test]
fn in_ring_decoding_keeps_where_each_chunk_is_and_checks_the_same() {
    let big = vec![7u8; CRIB_SOCK_CHUNK as usize];
    let recs = vec![
        sock(0, 5, Queue::UnixRecv, &[3, CRIB_SOCK_CHUNK + 1]),
        item(1, 5, 0, Queue::UnixRecv, 3),
        data(2, 5, 0, 0, b"abc"),
        item(3, 5, 1, Queue::UnixRecv, CRIB_SOCK_CHUNK + 1),
        data(4, 5, 1, 0, &big),
        data(5, 5, 1, CRIB_SOCK_CHUNK, b"z"),
        end(6, 0),
    ];
    let mut d = SockDecoder::<InRing>::with_store(false);
    for r in &recs {
        d.record(r);
    }
    let socks = d.judge(1, 0).unwrap();
    let q = socks[0].queue_store(Queue::UnixRecv);
    assert_eq!(q.len(), 4 + CRIB_SOCK_CHUNK as usize);
    // Each chunk is the payload inside its record, not a copy.
    let fixed = size_of::<crib_rec_sock_data>();
    let want: Vec<(usize, usize)> = [(2, 3), (4, CRIB_SOCK_CHUNK as usize), (5, 1)]
        .iter()
        .map(|&(i, n)| (recs[i][fixed..].as_ptr() as usize, n))
        .collect();
    assert_eq!(q.chunks, want);
    // The same checks as the copying decoder: a missing chunk is refused.
    let mut d = SockDecoder::<InRing>::with_store(false);
    for (i, r) in recs.iter().enumerate() {
        if i != 5 {
            d.record(r);
        }
    }
    assert!(d.judge(1, 0).is_err());
}

#[test]
fn missing_bytes_items_and_bad_totals_are_rejected() {
    // a chunk missing at the end of an item
    let recs = vec![
        sock(0, 5, Queue::UnixRecv, &[4]),
        item(1, 5, 0, Queue::UnixRecv, 4),
        data(2, 5, 0, 0, b"abc"),
        end(3, 0),
    ];
    let err = decode_stream(&recs).unwrap_err().to_string();
    assert!(err.contains("3 of its 4 bytes"), "{err}");
    // an item missing
    let recs = vec![sock(0, 5, Queue::UnixRecv, &[1]), end(1, 0)];
    let err = decode_stream(&recs).unwrap_err().to_string();
    assert!(err.contains("1 items announced, 0 arrived"), "{err}");
    // totals that disagree with the items
    let mut s = sock(0, 5, Queue::UnixRecv, &[2]);
    s[size_of::<crib_rec_sock>() - 4] = 1; // nr_items stays 1
    let recs = vec![
        s,
        item(1, 5, 0, Queue::UnixRecv, 1),
        data(2, 5, 0, 0, b"x"),
        end(3, 0),
    ];
    let err = decode_stream(&recs).unwrap_err().to_string();
    assert!(
        err.contains("snapshot info says 1 packets / 2 bytes"),
        "{err}"
    );
    // a gap between chunks
    let recs = vec![
        sock(0, 5, Queue::UnixRecv, &[5000]),
        item(1, 5, 0, Queue::UnixRecv, 5000),
        data(2, 5, 0, 4096, b"x"),
    ];
    assert!(decode_stream(&recs).is_err());
    // a chunk whose length disagrees with its record's size, an empty one, a padded one
    let mut short = data(2, 5, 0, 0, b"abcd");
    short.truncate(short.len() - 1);
    let size = (short.len() as u16).to_ne_bytes();
    short[2..4].copy_from_slice(&size);
    let mut padded = data(2, 5, 0, 0, b"abcd");
    padded.push(0);
    let size = (padded.len() as u16).to_ne_bytes();
    padded[2..4].copy_from_slice(&size);
    for bad in [short, padded, data(2, 5, 0, 0, b"")] {
        let recs = vec![
            sock(0, 5, Queue::UnixRecv, &[4]),
            item(1, 5, 0, Queue::UnixRecv, 4),
            bad,
        ];
        let err = decode_stream(&recs).unwrap_err().to_string();
        assert!(err.contains("says it carries"), "{err}");
    }
    // more bytes than the item has
    let recs = vec![
        sock(0, 5, Queue::UnixRecv, &[2]),
        item(1, 5, 0, Queue::UnixRecv, 2),
        data(2, 5, 0, 0, b"abc"),
    ];
    assert!(decode_stream(&recs).is_err());
}

#[test]
fn in_place_decoding_keeps_the_end_of_a_failed_run() {
    // records lost to a full ring buffer: the run is judged by its end record, not the gap
    let mut d = SockDecoder::new(false);
    for r in [
        sock(0, 5, Queue::UnixRecv, &[4]),
        item(1, 5, 0, Queue::UnixRecv, 4),
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
        hdr: header(CRIB_REC_SOCK, size_of::<crib_rec_sock>(), 0),
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
    d.record(&bytes_of(&s));
    d.record(&item(1, 4, 0, Queue::TcpRecv, 5));
    let err = d.judge(1, 0).unwrap_err().to_string();
    assert!(err.contains("in a summary dump"), "{err}");
}

#[test]
fn refused_sockets_and_failed_runs() {
    let s = crib_rec_sock {
        hdr: header(CRIB_REC_SOCK, size_of::<crib_rec_sock>(), 0),
        fd: 9,
        queue_err: -libc::EOPNOTSUPP,
        ..Default::default()
    };
    let raw = decode_stream(&[bytes_of(&s), end(1, 0)]).unwrap();
    let socks = finish(1, 0, raw).unwrap();
    assert_eq!(socks[0].sock.queue_err, -libc::EOPNOTSUPP);
    let raw = decode_stream(&[bytes_of(&s), end(1, -libc::ENOSPC)]).unwrap();
    let err = finish(1, -libc::ENOSPC, raw).unwrap_err().to_string();
    assert!(err.contains("ENOSPC"), "{err}");
    assert!(finish(1, 0, decode_stream(&[bytes_of(&s)]).unwrap()).is_err());
}
