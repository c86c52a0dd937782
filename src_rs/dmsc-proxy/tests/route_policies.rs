//! Per-route decisions that need no request: weighted splits, fault
//! injection, mirroring, header edits and static responses.

use std::sync::Arc;
use std::time::Duration;

use dmsc_proxy::config;
use dmsc_proxy::route::{
    FaultDecision, FaultPolicy, HeaderRewrite, MirrorPolicy, StaticResponse, WeightedClusters,
};

fn split(weights: &[(&str, u32)]) -> WeightedClusters {
    let pairs: Vec<(Arc<str>, u32)> = weights.iter().map(|(n, w)| (Arc::from(*n), *w)).collect();
    WeightedClusters::new(&pairs).expect("some weight is positive")
}

fn counts(wc: &WeightedClusters, names: &[&str], n: usize, seed: u64) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = vec![0usize; names.len()];
    for _ in 0..n {
        let picked = wc.pick(rng.u64(..));
        let i = names
            .iter()
            .position(|x| **x == **picked)
            .expect("picked a known cluster");
        out[i] += 1;
    }
    out
}

#[test]
fn canary_split_is_proportional() {
    let wc = split(&[("stable", 90), ("canary", 10)]);
    let n = 100_000;
    let c = counts(&wc, &["stable", "canary"], n, 1);
    let canary = c[1] as f64 / n as f64;
    assert!((canary - 0.10).abs() < 0.01, "canary share {canary}");
}

#[test]
fn three_way_split_is_proportional() {
    let wc = split(&[("a", 1), ("b", 2), ("c", 7)]);
    let n = 100_000;
    let c = counts(&wc, &["a", "b", "c"], n, 2);
    for (count, want) in c.iter().zip([0.1, 0.2, 0.7]) {
        let share = *count as f64 / n as f64;
        assert!((share - want).abs() < 0.01, "share {share}, want {want}");
    }
}

#[test]
fn blue_green_weight_zero_is_never_picked() {
    let blue_live = split(&[("blue", 1), ("green", 0)]);
    let green_live = split(&[("blue", 0), ("green", 1)]);
    let c = counts(&blue_live, &["blue", "green"], 100_000, 3);
    assert_eq!(c, vec![100_000, 0]);
    let c = counts(&green_live, &["blue", "green"], 100_000, 4);
    assert_eq!(c, vec![0, 100_000]);
    // Edge values of the random input too.
    for r in [0, 1, u64::MAX, u64::MAX - 1] {
        assert_eq!(&**blue_live.pick(r), "blue");
        assert_eq!(&**green_live.pick(r), "green");
    }
}

#[test]
fn random_weights_never_pick_zero_weight() {
    let mut rng = fastrand::Rng::with_seed(9);
    for _ in 0..500 {
        let n = rng.usize(1..8);
        let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let weights: Vec<u32> = (0..n)
            .map(|_| if rng.bool() { 0 } else { rng.u32(1..1000) })
            .collect();
        let pairs: Vec<(Arc<str>, u32)> = names
            .iter()
            .map(|s| Arc::from(s.as_str()))
            .zip(weights.iter().copied())
            .collect();
        match WeightedClusters::new(&pairs) {
            None => assert!(weights.iter().all(|w| *w == 0)),
            Some(wc) => {
                for _ in 0..200 {
                    let picked = wc.pick(rng.u64(..));
                    let i = names.iter().position(|x| **x == **picked).expect("known");
                    assert!(weights[i] > 0, "picked {picked} of weight 0");
                }
                let listed: Vec<u32> = wc.clusters().map(|(_, w)| w).collect();
                assert_eq!(listed, weights);
            }
        }
    }
}

#[test]
fn all_zero_or_empty_split_is_refused() {
    assert!(WeightedClusters::new(&[]).is_none());
    assert!(WeightedClusters::new(&[(Arc::from("a"), 0), (Arc::from("b"), 0)]).is_none());
    let one = WeightedClusters::single(Arc::from("only"));
    assert_eq!(&**one.pick(12345), "only");
    assert_eq!(one.clusters().count(), 1);
}

#[test]
fn fault_decide_at_0_50_100_percent() {
    let d = Duration::from_millis(20);
    let never = FaultPolicy {
        delay: Some((d, 0.0)),
        abort: Some((503, 0.0)),
    };
    let always = FaultPolicy {
        delay: Some((d, 1.0)),
        abort: Some((500, 1.0)),
    };
    let half = FaultPolicy {
        delay: Some((d, 0.5)),
        abort: Some((429, 0.5)),
    };
    let mut rng = fastrand::Rng::with_seed(12);
    let (mut delays, mut aborts) = (0usize, 0usize);
    let n = 100_000;
    for _ in 0..n {
        let (a, b) = (rng.u64(..), rng.u64(..));
        assert_eq!(never.decide(a, b), FaultDecision::default());
        assert_eq!(
            always.decide(a, b),
            FaultDecision {
                delay: Some(d),
                abort: Some(500)
            }
        );
        let h = half.decide(a, b);
        delays += usize::from(h.delay.is_some());
        aborts += usize::from(h.abort == Some(429));
    }
    for got in [delays, aborts] {
        let share = got as f64 / n as f64;
        assert!((share - 0.5).abs() < 0.01, "share {share}");
    }
    // The rule is exact in parts per million.
    assert_eq!(
        half.decide(499_999, 500_000),
        FaultDecision {
            delay: Some(d),
            abort: None
        }
    );
    assert_eq!(
        half.decide(1_000_000 + 500_000, 1_000_000 + 499_999),
        FaultDecision {
            delay: None,
            abort: Some(429)
        }
    );
}

#[test]
fn fault_delay_and_abort_are_independent() {
    let only_abort = FaultPolicy {
        delay: None,
        abort: Some((503, 1.0)),
    };
    assert_eq!(
        only_abort.decide(0, 0),
        FaultDecision {
            delay: None,
            abort: Some(503)
        }
    );
    let only_delay = FaultPolicy {
        delay: Some((Duration::from_millis(1), 1.0)),
        abort: None,
    };
    assert_eq!(only_delay.decide(0, 0).abort, None);
}

#[test]
fn mirror_sampling() {
    let m = MirrorPolicy {
        cluster: Arc::from("shadow"),
        fraction: 0.25,
    };
    let mut rng = fastrand::Rng::with_seed(13);
    let n = 100_000;
    let hits = (0..n).filter(|_| m.sample(rng.u64(..))).count();
    let share = hits as f64 / n as f64;
    assert!((share - 0.25).abs() < 0.01, "share {share}");
    let none = MirrorPolicy {
        cluster: Arc::from("shadow"),
        fraction: 0.0,
    };
    let all = MirrorPolicy {
        cluster: Arc::from("shadow"),
        fraction: 1.0,
    };
    for r in [0, 999_999, u64::MAX] {
        assert!(!none.sample(r));
        assert!(all.sample(r));
    }
}

#[test]
fn header_rewrite_compiles_set_as_remove_plus_add() {
    let cfg: config::HeaderRewrite = serde_json::from_str(
        r#"{"set": {"X-Env": "prod", "x-version": "2"}, "add": {"Via-Extra": "a"}, "remove": ["X-Debug", "x-env"]}"#,
    )
    .expect("valid JSON");
    let hr = HeaderRewrite::compile(&cfg, "request_headers").expect("valid");
    let removed: Vec<&str> = hr.remove.iter().map(|s| &**s).collect();
    assert_eq!(removed, vec!["x-debug", "x-env", "x-version"]);
    let added: Vec<(&str, &[u8])> = hr.add.iter().map(|(n, v)| (&**n, &**v)).collect();
    assert_eq!(
        added,
        vec![
            ("x-env", &b"prod"[..]),
            ("x-version", &b"2"[..]),
            ("via-extra", &b"a"[..])
        ]
    );
    assert!(!hr.is_empty());
    let empty = HeaderRewrite::compile(&config::HeaderRewrite::default(), "x").expect("valid");
    assert!(empty.is_empty());
}

#[test]
fn header_rewrite_refuses_bad_fields() {
    let bad = |json: &str| {
        let cfg: config::HeaderRewrite = serde_json::from_str(json).expect("valid JSON");
        HeaderRewrite::compile(&cfg, "response_headers")
            .expect_err("refused")
            .path
    };
    assert_eq!(
        bad(r#"{"set": {"x-a": "line\nbreak"}}"#),
        "response_headers.set.x-a"
    );
    assert_eq!(bad(r#"{"add": {"x a": "1"}}"#), "response_headers.add.x a");
    assert_eq!(
        bad(r#"{"remove": ["ok", "Content-Length"]}"#),
        "response_headers.remove[1]"
    );
    assert_eq!(
        bad(r#"{"set": {"Connection": "close"}}"#),
        "response_headers.set.Connection"
    );
}

#[test]
fn static_response_compiles() {
    let cfg: config::DirectResponse =
        serde_json::from_str(r#"{"status": 418, "body": "teapot", "headers": {"X-Kind": "tea"}}"#)
            .expect("valid JSON");
    let r = StaticResponse::compile(&cfg, "direct_response").expect("valid");
    assert_eq!(r.status, 418);
    assert_eq!(&*r.body, b"teapot");
    assert_eq!(r.headers.len(), 1);
    assert_eq!(&*r.headers[0].0, "x-kind");
    assert_eq!(&*r.headers[0].1, b"tea");
    let bad: config::DirectResponse =
        serde_json::from_str(r#"{"status": 99}"#).expect("valid JSON");
    assert_eq!(
        StaticResponse::compile(&bad, "d")
            .expect_err("refused")
            .path,
        "d.status"
    );
}
