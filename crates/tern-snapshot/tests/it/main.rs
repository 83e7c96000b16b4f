//! Round trips and every way a snapshot file can be damaged.

use tern_snapshot::*;

fn sample() -> Snapshot {
    let mut mem = vec![0u8; PAGE * 3 + 100];
    for (i, b) in mem[PAGE..PAGE * 2].iter_mut().enumerate() {
        *b = (i % 7) as u8;
    }
    let mut x: u32 = 1;
    for b in mem[PAGE * 3..].iter_mut() {
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

#[test]
fn round_trip_keeps_everything() {
    let s = sample();
    let bytes = encode(&s);
    assert_eq!(decode(&bytes).expect("decodes"), s);
    assert_eq!(peek_meta(&bytes).expect("meta"), s.meta);
    // One compressible page, one random page plus the partial tail; zero pages elided.
    assert_eq!(s.memories[0].chunks.len(), 2);
    assert!(bytes.len() < PAGE * 2, "stored {} bytes", bytes.len());
}

#[test]
fn every_truncation_is_refused() {
    let bytes = encode(&sample());
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
    let bytes = encode(&sample());
    for pos in (0..bytes.len()).step_by(31) {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x20;
        assert!(decode(&bad).is_err(), "flip at {pos} went unnoticed");
    }
}

#[test]
fn wrong_version_and_magic_are_named() {
    let mut bytes = encode(&sample());
    bytes[8] = 9;
    assert!(matches!(decode(&bytes), Err(Error::Version(9))));
    assert!(matches!(
        decode(b"\0asm\x01\0\0\0rest"),
        Err(Error::BadMagic)
    ));
}
