//! String tensors as bytes. BYTES elements are bytes, and ONNX Runtime's string tensors hold
//! C++ `std::string`s, which carry any bytes, NUL and invalid UTF-8 included. The `ort` binding
//! does not: it fills string tensors from C strings (`FillStringTensor`: a NUL ends the element)
//! and reads them back as Rust `String`s (UTF-8 only). So both directions go through ONNX
//! Runtime's C API here, with explicit lengths: [`to_tensor`] sizes each element with
//! `GetResizedStringTensorElementBuffer` and copies the bytes in; [`from_tensor`] reads them with
//! `GetStringTensorDataLength` and `GetStringTensorContent` (every element back to back, and each
//! one's offset). These are the crate's only `unsafe` blocks.

use std::ffi::c_char;

use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use ort::AsPointer;

/// Turns the status an ONNX Runtime call returned into a result.
///
/// # Safety
/// `status` must be what an `OrtApi` function just returned (null, or a status not yet released).
unsafe fn check(status: ort::sys::OrtStatusPtr) -> Result<(), String> {
    // SAFETY: the caller passes a status straight from the API; `result_from_status` takes
    // ownership of it (and releases it).
    unsafe { ort::Error::result_from_status(status) }.map_err(|e| e.to_string())
}

/// A string tensor of `shape` whose elements are exactly `items`' bytes.
pub(crate) fn to_tensor(shape: &[i64], items: &[Vec<u8>]) -> Result<DynValue, String> {
    let n = shape
        .iter()
        .try_fold(1usize, |n, &d| usize::try_from(d).ok()?.checked_mul(n))
        .ok_or_else(|| format!("shape {shape:?} is not a tensor shape"))?;
    if n != items.len() {
        return Err(format!(
            "shape {shape:?} holds {n} elements, the data {}",
            items.len()
        ));
    }
    // The tensor, every element empty; then each is resized to its bytes and filled.
    let empty = vec![""; n];
    let mut t =
        Tensor::from_string_array((shape.to_vec(), empty.as_slice())).map_err(|e| e.to_string())?;
    let value = t.ptr_mut();
    let api = ort::api();
    for (i, b) in items.iter().enumerate() {
        let mut buf: *mut c_char = std::ptr::null_mut();
        // SAFETY: `value` is the live string tensor `t` owns, of `n` elements, and `i < n`; ONNX
        // Runtime resizes element `i` to `b.len()` bytes and points `buf` at them.
        unsafe {
            check((api.GetResizedStringTensorElementBuffer)(
                value,
                i,
                b.len(),
                &mut buf,
            ))?;
        }
        if b.is_empty() {
            continue;
        }
        if buf.is_null() {
            return Err(format!(
                "ONNX Runtime gave no buffer for string element {i}"
            ));
        }
        // SAFETY: `buf` points at the `b.len()` bytes of element `i` (just resized; nothing
        // else touches the tensor meanwhile), and `b` is a separate Rust allocation of that
        // length, so the ranges are valid and do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), buf.cast::<u8>(), b.len()) };
    }
    Ok(t.into_dyn())
}

/// The shape and elements of a string tensor, each element exactly its bytes.
pub(crate) fn from_tensor(v: &DynValue) -> Result<(Vec<i64>, Vec<Vec<u8>>), String> {
    let shape: Vec<i64> = match v.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::String,
            shape,
            ..
        } => shape.iter().copied().collect(),
        other => return Err(format!("expected a string tensor, got {other}")),
    };
    let n = shape
        .iter()
        .try_fold(1usize, |n, &d| usize::try_from(d).ok()?.checked_mul(n))
        .ok_or_else(|| format!("ONNX Runtime answered a string tensor of shape {shape:?}"))?;
    if n == 0 {
        return Ok((shape, Vec::new()));
    }
    let value = v.ptr();
    let api = ort::api();
    let mut total = 0usize;
    // SAFETY: `value` is the live string tensor `v` owns (its type checked above); ONNX Runtime
    // writes the total byte length of its elements into `total`.
    unsafe { check((api.GetStringTensorDataLength)(value, &mut total))? };
    let mut data = vec![0u8; total];
    let mut offsets = vec![0usize; n];
    // SAFETY: `data` has room for `total` bytes and `offsets` for `n` offsets, the lengths
    // passed; ONNX Runtime copies the `n` elements back to back into `data` and writes where
    // each starts into `offsets` (it checks both lengths against the tensor's).
    unsafe {
        check((api.GetStringTensorContent)(
            value,
            data.as_mut_ptr().cast(),
            total,
            offsets.as_mut_ptr(),
            n,
        ))?;
    }
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let end = offsets.get(i + 1).copied().unwrap_or(total);
        let bytes = data
            .get(offsets[i]..end)
            .ok_or_else(|| format!("ONNX Runtime gave string element {i} out of its bounds"))?;
        items.push(bytes.to_vec());
    }
    Ok((shape, items))
}
