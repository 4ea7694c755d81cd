//! Checkpoints in the safetensors format (readable by Python's `safetensors`): an 8-byte
//! little-endian header length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]},
//! "__metadata__": {string: string}}` padded with spaces to a multiple of 8, then the raw
//! little-endian tensor bytes. Reading validates everything, since a checkpoint may come from
//! anywhere; every error names the file.

use crate::error::{Context, Error, Result};
use crate::fsutil::atomic_write_with;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// Same cap as the reference implementation: no real header comes near it, and it stops a corrupt
/// length from allocating gigabytes.
const MAX_HEADER: u64 = 100_000_000;

#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The safetensors dtype name.
    pub fn dtype(&self) -> &'static str {
        match self {
            TensorData::F32(_) => "F32",
            TensorData::I64(_) => "I64",
        }
    }
    fn byte_len(&self) -> usize {
        self.len() * dtype_size(self.dtype()).unwrap_or(0)
    }
    fn write_le(&self, out: &mut Vec<u8>) {
        match self {
            TensorData::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl NamedTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        NamedTensor { name: name.into(), shape, data: TensorData::F32(data) }
    }
    pub fn i64(name: impl Into<String>, shape: Vec<usize>, data: Vec<i64>) -> Self {
        NamedTensor { name: name.into(), shape, data: TensorData::I64(data) }
    }
    /// The values if this is an F32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }
    /// The values if this is an I64 tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }
}

/// Bytes per element of the dtypes safetensors defines; None for names it does not.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "I16" | "U16" | "F16" | "BF16" => 2,
        "I32" | "U32" | "F32" => 4,
        "I64" | "U64" | "F64" => 8,
        _ => return None,
    })
}

/// Writes `tensors` (in name order, as the reference implementation does) and `metadata`
/// atomically: a crash never leaves a half-written checkpoint under `path`.
pub fn write_safetensors(path: &Path, tensors: &[NamedTensor], metadata: &BTreeMap<String, String>) -> Result<()> {
    let mut sorted: Vec<&NamedTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut header = Map::new();
    let mut offset = 0usize;
    for (i, t) in sorted.iter().enumerate() {
        if i > 0 && sorted[i - 1].name == t.name {
            crate::bail!("{}: cannot write two tensors named {:?}", path.display(), t.name);
        }
        if t.name == "__metadata__" {
            crate::bail!("{}: \"__metadata__\" is reserved and cannot name a tensor", path.display());
        }
        let count = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if count != Some(t.data.len()) {
            crate::bail!("{}: tensor {:?} has shape {:?} but {} values", path.display(), t.name, t.shape, t.data.len());
        }
        let end = offset + t.data.byte_len();
        header
            .insert(t.name.clone(), json!({"dtype": t.data.dtype(), "shape": t.shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut head = serde_json::to_vec(&Value::Object(header)).map_err(|e| Error(e.to_string()))?;
    // Padding keeps the data 8-byte aligned for readers that map the file.
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut bytes = Vec::with_capacity(8 + head.len() + offset);
    bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&head);
    for t in &sorted {
        t.data.write_le(&mut bytes);
    }
    atomic_write_with(path, |f| f.write_all(&bytes))
}

/// Reads and validates a safetensors file holding F32 and I64 tensors, in file (name) order.
pub fn read_safetensors(path: &Path) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let p = path.display();
    let mut file = File::open(path).context(|| format!("cannot open checkpoint {p}"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).context(|| format!("cannot read checkpoint {p}"))?;
    parse_safetensors(&bytes, &p.to_string())
}

/// Validates and parses the bytes of a safetensors file; `what` names it in errors.
pub fn parse_safetensors(bytes: &[u8], what: &str) -> Result<(Vec<NamedTensor>, BTreeMap<String, String>)> {
    let p = what;
    let size = bytes.len() as u64;
    if size < 8 {
        crate::bail!("{p}: not a safetensors file (only {size} bytes; expected at least an 8-byte header length)");
    }
    let head_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if head_len > size - 8 {
        crate::bail!(
            "{p}: not a safetensors file (header length {} exceeds file size {})",
            human_bytes(head_len),
            human_bytes(size)
        );
    }
    if head_len > MAX_HEADER {
        crate::bail!(
            "{p}: not a safetensors file (header length {} exceeds the {} limit)",
            human_bytes(head_len),
            human_bytes(MAX_HEADER)
        );
    }
    let head = &bytes[8..8 + head_len as usize];
    let data = &bytes[8 + head_len as usize..];

    let header: Value = match std::str::from_utf8(head) {
        Ok(s) if s.starts_with('{') => {
            serde_json::from_str(s).context(|| format!("{p}: not a safetensors file (header is not valid JSON)"))?
        }
        _ => crate::bail!("{p}: not a safetensors file (header does not start with a JSON object)"),
    };
    let Value::Object(entries) = header else {
        crate::bail!("{p}: not a safetensors file (header is not a JSON object)");
    };

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    let mut spans = Vec::new();
    for (name, entry) in &entries {
        if name == "__metadata__" {
            metadata = parse_metadata(entry).map_err(|e| Error(format!("{p}: bad __metadata__: {e}")))?;
            continue;
        }
        let (t, span) = parse_tensor(entry, data).map_err(|e| Error(format!("{p}: tensor {name:?}: {e}")))?;
        spans.push((span, name.clone()));
        tensors.push(NamedTensor { name: name.clone(), shape: t.0, data: t.1 });
    }
    spans.sort();
    for w in spans.windows(2) {
        let ((a, an), (b, bn)) = (&w[0], &w[1]);
        if b.0 < a.1 {
            crate::bail!(
                "{p}: corrupt safetensors file: tensors {an:?} (bytes {}..{}) and {bn:?} (bytes {}..{}) overlap",
                a.0,
                a.1,
                b.0,
                b.1
            );
        }
    }
    Ok((tensors, metadata))
}

fn parse_metadata(v: &Value) -> std::result::Result<BTreeMap<String, String>, String> {
    let Value::Object(m) = v else {
        return Err("expected an object of strings".into());
    };
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(format!("value of {k:?} is {other}, expected a string")),
        })
        .collect()
}

type Parsed = ((Vec<usize>, TensorData), (usize, usize));

/// One header entry: checks dtype, shape and offsets against the data, and decodes the values.
fn parse_tensor(v: &Value, data: &[u8]) -> std::result::Result<Parsed, String> {
    let dtype = v.get("dtype").and_then(Value::as_str).ok_or("missing \"dtype\" string")?;
    let size = dtype_size(dtype).ok_or_else(|| format!("unknown dtype {dtype:?}"))?;
    if dtype != "F32" && dtype != "I64" {
        return Err(format!("unsupported dtype {dtype} (wgan checkpoints hold only F32 and I64)"));
    }
    let shape: Vec<usize> = v
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("missing \"shape\" array")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or(format!("shape entry {d} is not a non-negative integer")))
        .collect::<std::result::Result<_, _>>()?;
    let offs = v.get("data_offsets").and_then(Value::as_array).ok_or("missing \"data_offsets\" array")?;
    let (begin, end) = match offs.as_slice() {
        [a, b] => match (a.as_u64(), b.as_u64()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err("data_offsets must be two non-negative integers".into()),
        },
        _ => return Err(format!("data_offsets has {} entries, expected 2", offs.len())),
    };
    if begin > end || end > data.len() as u64 {
        return Err(format!("data_offsets [{begin}, {end}] out of range (data section is {} bytes)", data.len()));
    }
    let (begin, end) = (begin as usize, end as usize);
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let want = count.and_then(|c| c.checked_mul(size));
    if want != Some(end - begin) {
        return Err(format!(
            "shape {shape:?} of {dtype} needs {} bytes but data_offsets [{begin}, {end}] span {}",
            want.map_or("an impossible number of".into(), |w| w.to_string()),
            end - begin
        ));
    }
    let bytes = &data[begin..end];
    let values = match dtype {
        "F32" => TensorData::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        _ => TensorData::I64(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
    };
    Ok(((shape, values), (begin, end)))
}

/// Checks that a checkpoint holds exactly the `expected` tensors with the expected shapes, so a
/// checkpoint of another architecture (other sizes, other model) is reported rather than
/// half-loaded. `what` names the checkpoint in the message.
pub fn check_layout(found: &[NamedTensor], expected: &[(String, Vec<usize>)], what: &Path) -> Result<()> {
    const SHOW: usize = 4;
    let have: BTreeMap<&str, &[usize]> = found.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect();
    let want: BTreeMap<&str, &[usize]> = expected.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    let missing: Vec<String> = want.keys().filter(|n| !have.contains_key(*n)).map(|n| n.to_string()).collect();
    let wanted: BTreeSet<&str> = want.keys().copied().collect();
    let extra: Vec<String> = have.keys().filter(|n| !wanted.contains(*n)).map(|n| n.to_string()).collect();
    let mismatched: Vec<String> = want
        .iter()
        .filter_map(|(n, s)| match have.get(n) {
            Some(h) if h != s => Some(format!("{n}: checkpoint {h:?}, expected {s:?}")),
            _ => None,
        })
        .collect();
    if missing.is_empty() && extra.is_empty() && mismatched.is_empty() {
        return Ok(());
    }
    let list = |v: &[String]| {
        let mut s = v.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
        if v.len() > SHOW {
            s += &format!(", … and {} more", v.len() - SHOW);
        }
        s
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("{} missing ({})", missing.len(), list(&missing)));
    }
    if !extra.is_empty() {
        parts.push(format!("{} unexpected ({})", extra.len(), list(&extra)));
    }
    if !mismatched.is_empty() {
        parts.push(format!("{} with a different shape ({})", mismatched.len(), list(&mismatched)));
    }
    crate::bail!(
        "{}: checkpoint does not match this model's architecture: tensors {}; was it written with \
         different model options?",
        what.display(),
        parts.join("; ")
    )
}

/// "1 KiB", "8 GiB", "123 bytes": sizes in messages people read.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{:.0} {}", v, UNITS[u])
    } else {
        format!("{:.1} {}", v, UNITS[u])
    }
}
