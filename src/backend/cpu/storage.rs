//! Tensor storage: a shared, fixed-size buffer plus a shape and a flat offset (views share storage).

use super::Elem;
use crate::backend::numel;
use std::fmt;
use std::sync::Arc;

/// A fixed-size heap buffer that any clone of a tensor may write through (`_inplace` ops).
///
/// Like device memory, it does no locking: the backend's ops never write a buffer that another op
/// is reading at the same time on the same thread, and callers must not run an `_inplace` op on a
/// buffer while another thread reads it.
pub(crate) struct Storage<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: the buffer is plain data owned by the Storage; see the type's doc for the aliasing rule.
unsafe impl<T: Send> Send for Storage<T> {}
unsafe impl<T: Send + Sync> Sync for Storage<T> {}

impl<T> Storage<T> {
    fn new(data: Vec<T>) -> Self {
        let b = data.into_boxed_slice();
        let len = b.len();
        let ptr = Box::into_raw(b) as *mut T;
        Storage { ptr, len }
    }
}

impl<T> Drop for Storage<T> {
    fn drop(&mut self) {
        // SAFETY: ptr/len came from Box::into_raw of a boxed slice of this length.
        unsafe { drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len))) }
    }
}

/// A dense row-major tensor of the CPU backend. Cloning shares the storage.
#[derive(Clone)]
pub struct CpuTensor<T> {
    storage: Arc<Storage<T>>,
    offset: usize,
    shape: Vec<usize>,
}

impl<T: Elem> CpuTensor<T> {
    /// A tensor that owns `data` (whose length must be `numel(shape)`).
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Self {
        assert_eq!(data.len(), numel(shape), "from_vec: {} elements for shape {:?}", data.len(), shape);
        CpuTensor { storage: Arc::new(Storage::new(data)), offset: 0, shape: shape.to_vec() }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    /// Flat offset of this tensor in its storage (non-zero only for views).
    pub fn offset(&self) -> usize {
        self.offset
    }
    /// A copy of the elements.
    pub fn to_vec(&self) -> Vec<T> {
        // SAFETY: read-only copy; see Storage's aliasing rule.
        unsafe { self.data().to_vec() }
    }
    /// Whether both tensors are windows on the same buffer.
    pub fn shares_storage(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }
    /// Whether the two tensors' element ranges in a shared buffer intersect.
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        self.shares_storage(other)
            && self.offset < other.offset + other.numel()
            && other.offset < self.offset + self.numel()
    }
    /// A view of `shape` starting `offset` elements into this tensor.
    pub(crate) fn view(&self, offset: usize, shape: &[usize]) -> Self {
        assert!(
            offset + numel(shape) <= self.numel(),
            "view of {} elements at offset {} of a tensor of shape {:?}",
            numel(shape),
            offset,
            self.shape
        );
        CpuTensor { storage: self.storage.clone(), offset: self.offset + offset, shape: shape.to_vec() }
    }
    /// A view of `shape` starting where this tensor starts, which may reach past its end into the
    /// rest of the storage (`join_rows`).
    pub(crate) fn widened(&self, shape: &[usize]) -> Self {
        assert!(self.offset + numel(shape) <= self.storage.len, "widened view {shape:?} exceeds the storage");
        CpuTensor { storage: self.storage.clone(), offset: self.offset, shape: shape.to_vec() }
    }
    pub(crate) fn ptr(&self) -> *mut T {
        // SAFETY: offset + numel <= len is an invariant of every constructor.
        unsafe { self.storage.ptr.add(self.offset) }
    }
    /// The elements, read-only.
    ///
    /// # Safety
    /// No `_inplace` write to an overlapping range may happen while the slice lives.
    pub(crate) unsafe fn data(&self) -> &[T] {
        std::slice::from_raw_parts(self.ptr(), self.numel())
    }
    /// The elements, writable through a shared handle.
    ///
    /// # Safety
    /// No other slice of an overlapping range may live at the same time.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn data_mut(&self) -> &mut [T] {
        std::slice::from_raw_parts_mut(self.ptr(), self.numel())
    }
}

impl<T: Elem> fmt::Debug for CpuTensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: read-only.
        let head: Vec<T> = unsafe { self.data().iter().take(6).copied().collect() };
        f.debug_struct("CpuTensor")
            .field("shape", &self.shape)
            .field("offset", &self.offset)
            .field("head", &head)
            .finish()
    }
}
