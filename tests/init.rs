//! The initialisation rule per layer kind (src/nn/mod.rs, `InitRule`): the toy MLPs start by
//! PyTorch's nn.Linear defaults, biases included; the DCGANs by N(0, 0.02); `--init` switches.

use wgan::backend::cpu::Cpu;
use wgan::backend::Backend;
use wgan::nn::arch::{dcgan_critic, dcgan_generator, toy_critic, CriticNorm};
use wgan::nn::{InitRule, Model, Net};
use wgan::train::{DatasetKind, TrainOptions};

/// (name, values) of every parameter of a freshly initialised model.
fn values(net: Net) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let be = Cpu::<f32>::new();
    Model::new(&be, net, 7, 2).named_state(&be)
}

fn std_of(v: &[f32]) -> f64 {
    let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    (v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

#[test]
fn toy_mlps_follow_pytorch_linear_defaults() {
    for (name, shape, v) in values(toy_critic()) {
        let fan_in = *shape.last().unwrap() as f64;
        let fan_in = if name.ends_with("bias") {
            // a bias's bound is that of its layer's weight: 1/√in of the layer
            match name.as_str() {
                "main.0.bias" => 2.0,
                _ => 512.0,
            }
        } else {
            fan_in
        };
        let bound = 1.0 / fan_in.sqrt();
        let max = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
        assert!(max <= bound * (1.0 + 1e-6), "{name}: |value| {max} > 1/√fan_in = {bound}");
        // U(−b, b) has standard deviation b/√3; with ≥ 512 draws it is within 15 % of that
        if v.len() >= 512 {
            let s = std_of(&v);
            assert!((s / (bound / 3f64.sqrt()) - 1.0).abs() < 0.15, "{name}: std {s}, bound {bound}");
        }
        assert!(v.iter().any(|&x| x != 0.0), "{name}: all zero (biases must be drawn too)");
    }
}

#[test]
fn dcgans_keep_normal_0_02_and_conv_transpose_fan_in_is_pytorchs() {
    for net in [dcgan_critic(28, 1, 16, CriticNorm::Layer).unwrap(), dcgan_generator(28, 1, 16, 100).unwrap()] {
        for (name, shape, v) in values(net) {
            if shape.len() == 4 {
                let s = std_of(&v);
                assert!((s / 0.02 - 1.0).abs() < 0.15, "{name}: std {s}, want 0.02");
            }
        }
    }
    // Under the pytorch rule a ConvTranspose2d weight [cin, cout, k, k] has fan_in = cout·k²
    // (PyTorch's _calculate_fan_in_and_fan_out reads dim 1), a Conv2d weight [cout, cin, k, k] cin·k².
    let g = dcgan_generator(28, 1, 16, 100).unwrap().with_init(InitRule::Pytorch);
    let (name, shape, v) = values(g).into_iter().next().unwrap();
    assert_eq!(shape, vec![100, 64, 7, 7], "{name}");
    let bound = 1.0 / ((64 * 49) as f64).sqrt();
    let max = v.iter().fold(0f64, |m, &x| m.max((x as f64).abs()));
    assert!(max <= bound && max > 0.9 * bound, "{name}: max |w| {max}, bound {bound}");
}

#[test]
fn the_rule_is_resolved_recorded_and_switchable() {
    let toy = TrainOptions { dataset: Some(DatasetKind::EightGaussians), ..Default::default() }.resolve().unwrap();
    assert_eq!(toy.init, InitRule::Pytorch);
    let img = TrainOptions::default().resolve().unwrap();
    assert_eq!(img.init, InitRule::Dcgan);
    let switched =
        TrainOptions { dataset: Some(DatasetKind::EightGaussians), init: Some(InitRule::Dcgan), ..Default::default() }
            .resolve()
            .unwrap();
    let (g, _) = switched.networks().unwrap();
    let be = Cpu::<f32>::new();
    let p = be.to_f32(&Model::new(&be, g, 1, 1).params);
    let bias0 = &p[1024..1024 + 512]; // main.0.weight is [512, 2]: 1024 values
    assert!(bias0.iter().all(|&b| b == 0.0), "dcgan rule: zero biases");
    // a configuration written before `init` existed ran with the dcgan rule
    let mut json = serde_json::to_value(&toy).unwrap();
    json.as_object_mut().unwrap().remove("init");
    let old: wgan::train::TrainConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.init, InitRule::Dcgan);
    // toy critics have no normalisation, and say so
    assert_eq!(serde_json::to_value(&toy).unwrap()["critic_norm"], "none");
    let bad = TrainOptions {
        dataset: Some(DatasetKind::EightGaussians),
        critic_norm: Some(CriticNorm::Layer),
        ..Default::default()
    }
    .resolve();
    assert!(bad.unwrap_err().to_string().contains("--critic-norm layer"));
}
