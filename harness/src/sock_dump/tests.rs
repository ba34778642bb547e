//! Unit tests of the socket record decoder: complete dumps, truncated ones, errors.

use super::*;

fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: bindgen record structs are plain data with explicit padding fields.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

fn sock(seq: u32, fd: u32, q: Queue, lens: &[u32]) -> Vec<u8> {
    let mut r = crib_rec_sock::default();
    r.hdr.type_ = CRIB_REC_SOCK as u16;
    r.hdr.size = size_of::<crib_rec_sock>() as u16;
    r.hdr.seq = seq;
    r.fd = fd;
    r.family = libc::AF_UNIX as u16;
    r.nr[q as usize] = lens.len() as u32;
    r.bytes[q as usize] = lens.iter().map(|&l| u64::from(l)).sum();
    r.nr_items = lens.len() as u32;
    bytes_of(&r)
}

fn item(seq: u32, fd: u32, index: u32, q: Queue, len: u32) -> Vec<u8> {
    let mut r = crib_rec_sock_item::default();
    r.hdr.type_ = CRIB_REC_SOCK_ITEM as u16;
    r.hdr.size = size_of::<crib_rec_sock_item>() as u16;
    r.hdr.seq = seq;
    r.fd = fd;
    r.index = index;
    r.queue = q as u32;
    r.len = len;
    bytes_of(&r)
}

fn data(seq: u32, fd: u32, index: u32, offset: u32, bytes: &[u8]) -> Vec<u8> {
    let mut r = crib_rec_sock_data::default();
    r.hdr.type_ = CRIB_REC_SOCK_DATA as u16;
    r.hdr.size = size_of::<crib_rec_sock_data>() as u16;
    r.hdr.seq = seq;
    r.fd = fd;
    r.index = index;
    r.offset = offset;
    r.len = bytes.len() as u32;
    r.data[..bytes.len()].copy_from_slice(bytes);
    bytes_of(&r)
}

fn end(seq: u32, error: i32) -> Vec<u8> {
    let mut e = crib_rec_end::default();
    e.hdr.type_ = CRIB_REC_END as u16;
    e.hdr.size = size_of::<crib_rec_end>() as u16;
    e.hdr.seq = seq;
    e.error = error;
    e.nr_records = seq;
    bytes_of(&e)
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
    assert_eq!(socks[0].items[0].data, b"abc");
    assert_eq!(socks[0].items[1].data.len(), CRIB_SOCK_CHUNK as usize + 1);
    assert_eq!(socks[0].queue_bytes(Queue::UnixRecv).len(), 4 + 4096);
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
}

#[test]
fn refused_sockets_and_failed_runs() {
    let mut s = crib_rec_sock::default();
    s.hdr.type_ = CRIB_REC_SOCK as u16;
    s.hdr.size = size_of::<crib_rec_sock>() as u16;
    s.fd = 9;
    s.queue_err = -libc::EOPNOTSUPP;
    let raw = decode_stream(&[bytes_of(&s), end(1, 0)]).unwrap();
    let socks = finish(1, 0, raw).unwrap();
    assert_eq!(socks[0].sock.queue_err, -libc::EOPNOTSUPP);
    let raw = decode_stream(&[bytes_of(&s), end(1, -libc::ENOSPC)]).unwrap();
    let err = finish(1, -libc::ENOSPC, raw).unwrap_err().to_string();
    assert!(err.contains("ENOSPC"), "{err}");
    assert!(finish(1, 0, decode_stream(&[bytes_of(&s)]).unwrap()).is_err());
}
