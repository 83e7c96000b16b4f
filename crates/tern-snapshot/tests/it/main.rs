//! Round trips and every way a snapshot file can be damaged.

use tern_snapshot::*;

fn sample() -> Snapshot {
    // Page 1 compresses, page 3 is random, pages 4 and 5 form a run, the rest is zero.
    let mut mem = vec![0u8; PAGE * 7];
    mem[PAGE * 4 + 5] = 1;
    mem[PAGE * 6 - 1] = 2;
    for (i, b) in mem[PAGE..PAGE * 2].iter_mut().enumerate() {
        *b = (i % 7) as u8;
    }
    let mut x: u32 = 1;
    for b in mem[PAGE * 3..PAGE * 4].iter_mut() {
        x = x.wrapping_mul(1664525).wrapping_add(1013904223);
        *b = (x >> 24) as u8;
    }
    Snapshot {
        meta: Meta {
            module_digest: digest(b"module"),
            transform_version: 1,
            created_unix_ms: 1,
            tern_version: "0".into(),
            stack: vec![FrameInfo {
                function: 3,
                name: Some("main".into()),
                resume_point: 2,
            }],
            fds: vec![FdInfo {
                fd: 1,
                description: "stdout".into(),
            }],
            ref_slots: [0, 0, 2],
        },
        wasi: serde_json::json!({"args": ["a"]}),
        globals: vec![
            GlobalValue {
                index: 0,
                value: Value::I32(-5),
            },
            GlobalValue {
                index: 1,
                value: Value::F64(7),
            },
            GlobalValue {
                index: 2,
                value: Value::V128(u128::MAX - 3),
            },
        ],
        frames: vec![1, 2, 3, 4],
        memories: vec![MemoryImage::capture(0, &mem)],
        module: Some(b"\0asm".to_vec()),
    }
}

const ENCODINGS: [PageEncoding; 2] = [PageEncoding::Raw, PageEncoding::Lz4];

#[test]
fn round_trip_keeps_everything() {
    let s = sample();
    for enc in ENCODINGS {
        let bytes = encode(&s, enc);
        assert_eq!(decode(&bytes).expect("decodes"), s, "{enc:?}");
        assert_eq!(peek_meta(&bytes).expect("meta"), s.meta);
        let mut streamed = Vec::new();
        write(&s, enc, &mut streamed).expect("writes");
        assert_eq!(streamed, bytes);
    }
    assert_eq!(s.memories[0].chunks.len(), 4);
}

#[test]
fn raw_pages_are_aligned_runs_and_lz4_pages_are_small() {
    let s = sample();
    let raw = encode(&s, PageEncoding::Raw);
    let opened = open(&raw).expect("opens");
    let chunks = &opened.memories[0].chunks;
    // Pages 1, 3 and the run 4..6: three raw chunks, each at a 64 KiB multiple.
    assert_eq!(
        chunks
            .iter()
            .map(|c| (c.first_page, c.pages))
            .collect::<Vec<_>>(),
        [(1, 1), (3, 3)]
    );
    for c in chunks {
        assert_eq!(c.encoding, ChunkEncoding::Raw);
        assert_eq!(c.offset % PAGE as u64, 0);
    }
    opened.verify_pages(&raw).expect("pages verify");

    let packed = encode(&s, PageEncoding::Lz4);
    let opened = open(&packed).expect("opens");
    let encodings: Vec<_> = opened.memories[0]
        .chunks
        .iter()
        .map(|c| (c.first_page, c.encoding))
        .collect();
    assert_eq!(
        encodings,
        [
            (1, ChunkEncoding::Lz4),
            (3, ChunkEncoding::Raw),
            (4, ChunkEncoding::Lz4),
            (5, ChunkEncoding::Lz4)
        ]
    );
    opened.verify_pages(&packed).expect("pages verify");
    assert!(packed.len() < raw.len());
}

#[test]
fn every_truncation_is_refused() {
    for enc in ENCODINGS {
        truncations_refused(&encode(&sample(), enc));
    }
}

fn truncations_refused(bytes: &[u8]) {
    for len in (0..bytes.len()).step_by(97).chain([bytes.len() - 1]) {
        let err = decode(&bytes[..len]).expect_err("truncated snapshot must fail");
        assert!(
            matches!(
                err,
                Error::Truncated(_) | Error::Corrupted(_) | Error::BadMagic
            ),
            "{len}: {err}"
        );
    }
}

#[test]
fn every_flipped_byte_is_detected() {
    for enc in ENCODINGS {
        let bytes = encode(&sample(), enc);
        for pos in (0..bytes.len()).step_by(31) {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x20;
            // Opening checks all but the pages; verifying the pages checks the rest.
            let caught = open(&bad).and_then(|o| o.verify_pages(&bad)).is_err();
            assert!(caught, "{enc:?}: flip at {pos} went unnoticed");
            assert!(decode(&bad).is_err(), "{enc:?}: flip at {pos} decoded");
        }
    }
}

#[test]
fn wrong_version_and_magic_are_named() {
    let mut bytes = encode(&sample(), PageEncoding::Raw);
    bytes[8] = 9;
    assert!(matches!(decode(&bytes), Err(Error::Version(9))));
    assert!(matches!(
        decode(b"\0asm\x01\0\0\0rest"),
        Err(Error::BadMagic)
    ));
}
