/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * flaxdev: a Flax model served through a character device.
 *
 * Two kinds of node, as device-mapper's /dev/mapper/control and
 * /dev/mapper/<name>:
 *  - /dev/flax/control (FLAX_CONTROL_NODE), the misc device "flax": what is
 *    global.  Workers create a model there (FLAX_IOC_MODEL_CREATE), which
 *    needs the node open for writing; anyone who may open it may ask for
 *    FLAX_IOC_INFO and look models up (FLAX_IOC_MODEL_GET,
 *    FLAX_IOC_LABELS_GET).  Every other request that names a model by id
 *    is for the model's owner and CAP_SYS_ADMIN only (-EPERM).
 *  - /dev/flax/<model>, one character device per model, created with the
 *    model and removed when it is destroyed, owned by the uid and gid and
 *    with the mode given at creation (default: the creator's, 0600).
 *    Clients open it and run the model with FLAX_IOC_INFER or
 *    FLAX_IOC_SUBMIT (the node open for writing) or, from a shell, write(2)
 *    one input as text and read(2) that open file's text result back;
 *    workers open it to attach (FLAX_IOC_WORKER_ATTACH), mmap the slot
 *    region and loop on FLAX_IOC_FETCH (which also completes the previous
 *    batch).  A request on a model's node names that model: model id 0 or
 *    its own (-EINVAL for another).
 *
 * ABI rules:
 *  - every ioctl number encodes the size of its struct; the kernel accepts
 *    any size from the first published version (FLAX_*_SIZE_VER0) upwards:
 *    a shorter struct is zero-extended, a longer one must have a zero tail
 *    (otherwise -E2BIG), as copy_struct_from_user() does;
 *  - every reserved field, padding field and undefined flag must be zero
 *    (otherwise -EINVAL);
 *  - user pointers travel as __u64, floats as IEEE-754 binary32 bit
 *    patterns in __u32 fields (no floating point in the kernel ABI);
 *  - nothing in the shared region is ever trusted by the kernel except
 *    payload: slot indices and sizes come from the kernel's own state;
 *  - a request is matched on its type (FLAX_IOC_MAGIC) and number, then
 *    must have the direction published below (_IOR, _IOW or _IOWR): the
 *    right number with another direction fails with -ENOTTY, as an
 *    unknown request does;
 *  - FLAX_ABI_VERSION (struct flax_info.abi_version, struct
 *    flax_region_layout.abi_version) changes only with a change that
 *    longer structs and struct flax_info.features cannot express, one
 *    after which an existing request or the region layout means
 *    something else.  A client or worker that reads another version than
 *    the FLAX_ABI_VERSION it was built with must not go on: its requests
 *    would be misread.  Within a version, fields come with longer structs
 *    (FLAX_*_SIZE_VER1 ...) and optional behaviour with feature bits.
 *
 * Errors common to every ioctl: EFAULT (bad pointer), EINVAL (a struct
 * shorter than its first version, a reserved field, flag or padding not
 * zero, a value out of range), E2BIG (non-zero bytes past the struct this
 * module knows), ENOTTY (unknown request, or a known one with another
 * direction).  Besides:
 *  - MODEL_CREATE: EEXIST (name taken), ENOSPC (max_models reached),
 *    EDQUOT (the caller, without CAP_SYS_ADMIN, owns max_models_per_user
 *    models), ENOMEM (region too large);
 *  - MODEL_CREATE, MODEL_DESTROY, LABELS_SET, VOCAB_SET, WORKER_ATTACH
 *    change models: EBADF on an fd not open for writing; but for
 *    MODEL_CREATE, EPERM unless the caller owns the model or has
 *    CAP_SYS_ADMIN;
 *  - INFER, SUBMIT: on the control node EPERM unless the caller owns the
 *    model or has CAP_SYS_ADMIN (others open the model's node); on a
 *    model's node EBADF unless it is open for writing;
 *  - MODEL_CREATE: ENOTTY on a model's node; EPERM for an owner other
 *    than the caller without CAP_CHOWN, or a group the caller is not in;
 *  - MODEL_GET, MODEL_DESTROY, LABELS_SET, LABELS_GET, INFER,
 *    WORKER_ATTACH: ENOENT (no such model);
 *  - MODEL_CREATE, MODEL_GET: EINVAL for a name that is not a valid name
 *    (see struct flax_model_desc.name); MODEL_GET gives ENOENT only for
 *    a valid name that no model has;
 *  - LABELS_SET: E2BIG (too many labels or bytes); LABELS_GET: ENOSPC
 *    (buffer too small); VOCAB_SET: ENOENT, EINVAL (not a tokenising
 *    model, or a bad line), E2BIG, EBUSY (already set);
 *  - WORKER_ATTACH: EINVAL (fd already a worker), EBUSY (FLAX_MAX_WORKERS
 *    attached);
 *  - FETCH, COMPLETE, mmap: ENXIO (fd is not a worker), ENODEV (model
 *    destroyed); COMPLETE and FETCH: EINVAL (bad completion);
 *  - SUBMIT: as INFER for the first entry, ENOSPC aside; REAP: EINTR,
 *    ENOMEM (nothing reaped; try again), EFAULT for an entry's bad output
 *    pointer (that result stays on the fd for the next REAP; the call
 *    fails only if it reaped nothing before it);
 *  - INFER: EINVAL (input_size is not the model's input size: the
 *    product of its input dims times the element size of its input
 *    dtype, see FLAX_DTYPE_*; for FLAX_PRE_TOKENIZE more than text_max
 *    bytes), EFAULT for a bad output pointer (found only when the result
 *    is copied out: the job ran, and its result is lost), ENOSPC (output
 *    buffer too small; with FLAX_INFER_TEXT the job ran, and its result
 *    is lost), ENODATA (a tokenising model without vocabulary), EILSEQ
 *    (text that is not UTF-8), EAGAIN
 *    (O_NONBLOCK and max_queue requests under way), ETIMEDOUT, EINTR (signal;
 *    not restarted), ENODEV (model destroyed meanwhile), EIO (the job's
 *    workers died too often, or the worker failed the job: its own code is
 *    then in struct flax_infer.worker_status); SUBMIT also EBUSY (the
 *    fd has max_pending requests not yet reaped).
 *
 * The demo's data for C clients: pyflaxdev/models/digits_heldout.npy holds
 * the 360 held-out digit images (NumPy .npy, uint8, shape (360, 8, 8), the
 * input of the "digits" model), and only the images; their classes (0 to
 * 9, in the same order) are the "heldout_labels" list of
 * pyflaxdev/models/digits_meta.json.
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _UAPI_LINUX_FLAXDEV_H
#define _UAPI_LINUX_FLAXDEV_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

#define FLAX_ABI_VERSION 1
#define FLAX_DEVICE_NAME "flax" /* the control node's kernel name */
#define FLAX_NODE_DIR "/dev/flax" /* every node, as devtmpfs names them */
#define FLAX_CONTROL_NODE FLAX_NODE_DIR "/control"

#define FLAX_NAME_MAX 32
#define FLAX_MAX_DIMS 6
#define FLAX_TOPK_MAX 64
#define FLAX_POST_CHAIN_MAX 8
#define FLAX_MAX_WORKERS 8
#define FLAX_REGION_MAGIC 0x464c4158 /* "FLAX" */
#define FLAX_STATUS_ERRNO_MAX 511 /* below -ERESTARTSYS: user-visible errnos */
#define FLAX_MAX_WAIT_US 10000000 /* longest batching delay: 10 s */

/*
 * Element types (struct flax_tensor_spec.dtype), little-endian, with the
 * size of one element in bytes.  An input of a model takes the product of
 * its dims times that size (struct flax_infer.input_size must be exactly
 * that, otherwise -EINVAL).
 */
#define FLAX_DTYPE_UINT8 1 /* 1 byte */
#define FLAX_DTYPE_FLOAT32 2 /* 4 bytes, IEEE-754 binary32 */
#define FLAX_DTYPE_INT8 3 /* 1 byte */
#define FLAX_DTYPE_UINT16 4 /* 2 bytes */
#define FLAX_DTYPE_INT16 5 /* 2 bytes */
#define FLAX_DTYPE_INT32 6 /* 4 bytes */
#define FLAX_DTYPE_FLOAT16 7 /* 2 bytes, IEEE-754 binary16 */

/* Preprocessing (struct flax_model_desc.pre_op). */
#define FLAX_PRE_NONE 0 /* input copied to the slot as is */
#define FLAX_PRE_NORMALIZE 1 /* float32 (x * scale - mean[c]) / std[c] */
#define FLAX_PRE_TOKENIZE 2 /* UTF-8 text to WordPiece ids and mask */

#define FLAX_TEXT_MAX_DEFAULT 4096 /* struct flax_model_desc.text_max */

/*
 * Postprocessing steps (struct flax_model_desc.post_ops[]), applied in
 * order to the worker's float32 output; FLAX_POST_END ends the chain and
 * every entry after it must be FLAX_POST_END too.  Accepted chains, as
 * regular expressions over the steps:
 *
 *	(SOFTMAX | LOG_SOFTMAX)? (TOPK | ARGMAX)?
 *	SIGMOID THRESHOLD?
 *	MEAN_POOL? L2_NORMALIZE?
 *
 * SOFTMAX, LOG_SOFTMAX, SIGMOID and L2_NORMALIZE work on the whole output
 * tensor as one vector; MEAN_POOL needs an output of shape (T, D) and
 * averages the T rows whose attention mask is non-zero (the mask of a
 * FLAX_PRE_TOKENIZE input; every row for other models), giving D values.
 * A chain ending in TOPK, ARGMAX (k = 1) or THRESHOLD (every score >=
 * struct flax_model_desc.threshold, by ascending index, at most the
 * output's element count) yields a struct flax_topk_result; any other
 * chain a vector of float32.
 */
#define FLAX_POST_END 0
#define FLAX_POST_SOFTMAX 1
#define FLAX_POST_TOPK 2
#define FLAX_POST_LOG_SOFTMAX 3
#define FLAX_POST_ARGMAX 4
#define FLAX_POST_SIGMOID 5
#define FLAX_POST_THRESHOLD 6
#define FLAX_POST_MEAN_POOL 7
#define FLAX_POST_L2_NORMALIZE 8

/* struct flax_model_desc.flags. */
#define FLAX_MODEL_NORM_CHANNEL_FIRST _BITUL(0) /* per channel: dims[0] */
#define FLAX_MODEL_NORM_CLAMP _BITUL(1) /* clamp to [clamp_lo, clamp_hi] */
#define FLAX_MODEL_OWNER _BITUL(2) /* owner_uid and owner_gid are given */

#define FLAX_NODE_MODE_DEFAULT 0600 /* struct flax_model_desc.node_mode 0 */

#define FLAX_LABELS_MAX 65536 /* labels of one model */
#define FLAX_LABEL_MAX 127 /* bytes of one label, newline excluded */
#define FLAX_LABELS_BYTES_MAX 4194304 /* bytes of a labels upload: 4 MiB */

/**
 * struct flax_info - device information (FLAX_IOC_INFO).
 * @abi_version: FLAX_ABI_VERSION of the running module; a client built
 *	with another must not use the device (see the ABI rules above).
 * @nmodels: number of models that exist now.
 * @max_models: most models that can exist at once.
 * @max_slots: most slots one model may have.
 * @max_slot_bytes: largest input or output slot, in bytes.
 * @max_workers: most workers attached to one model at once.
 * @topk_max: largest k accepted by FLAX_POST_TOPK.
 * @name_max: size of a model name buffer, NUL included.
 * @features: optional features this module supports, FLAX_F_* bits
 *	(FLAX_F_ALL for this header's); a caller tests a bit before using
 *	what it names.
 */
struct flax_info {
	__u32 abi_version;
	__u32 nmodels;
	__u32 max_models;
	__u32 max_slots;
	__u32 max_slot_bytes;
	__u32 max_workers;
	__u32 topk_max;
	__u32 name_max;
	__u64 features;
};

#define FLAX_INFO_SIZE_VER0 40

/* struct flax_info.features. */
#define FLAX_F_FETCH_NOWAIT _BITULL(0) /* FLAX_FETCH_NOWAIT is accepted */
#define FLAX_F_ALL (FLAX_F_FETCH_NOWAIT)

/**
 * struct flax_tensor_spec - shape and element type of a tensor.
 * @dtype: FLAX_DTYPE_*.
 * @ndim: number of dimensions, 1 to FLAX_MAX_DIMS.
 * @dims: the dimensions, each at least 1; entries past @ndim must be 0.
 */
struct flax_tensor_spec {
	__u32 dtype;
	__u32 ndim;
	__u32 dims[FLAX_MAX_DIMS];
};

/**
 * struct flax_model_desc - a model (FLAX_IOC_MODEL_CREATE, FLAX_IOC_MODEL_GET).
 * @id: out: the model's id, used by every other ioctl.
 * @flags: FLAX_MODEL_* flags.
 * @name: NUL-terminated name, 1 to FLAX_NAME_MAX - 1 characters from
 *	[A-Za-z0-9_.-], neither "." nor ".." nor "control" (the names of
 *	/dev/flax/<name>); bytes after the NUL must be 0.  In for both
 *	ioctls.
 * @input: what a client sends: the product of the dims times the dtype's
 *	element size (see FLAX_DTYPE_*) bytes, exactly (-EINVAL otherwise;
 *	FLAX_PRE_TOKENIZE aside, below).
 *	With FLAX_PRE_NORMALIZE the worker sees float32 of the same shape,
 *	otherwise the client's bytes unchanged.
 *	With FLAX_PRE_TOKENIZE it is what the worker sees: int32 [2, L],
 *	row 0 the token ids ([CLS] ... [SEP] [PAD]...), row 1 the attention
 *	mask; the client sends UTF-8 text of up to @text_max bytes, which
 *	the model's vocabulary (FLAX_IOC_VOCAB_SET) tokenises, truncated
 *	to L tokens.
 * @output: what the worker produces; dtype must be FLAX_DTYPE_FLOAT32.
 * @pre_op: FLAX_PRE_*.
 * @norm_count: FLAX_PRE_NORMALIZE: number of mean/std pairs: 1 (one for
 *	all elements), the size of the last input dimension (per channel,
 *	channel-last), the size of the first with
 *	FLAX_MODEL_NORM_CHANNEL_FIRST, or the input element count (per
 *	feature).
 * @norm_scale: FLAX_PRE_NORMALIZE: binary32 factor applied first.
 * @__pad0: must be 0.
 * @norm_mean: create: user pointer to @norm_count binary32 means; get: if
 *	not 0, the means are written there (call GET once without pointers
 *	to learn @norm_count).
 * @norm_std: as @norm_mean, for the standard deviations (each > 0).
 * @post_ops: FLAX_POST_* chain, FLAX_POST_END-terminated.
 * @topk: k for FLAX_POST_TOPK, 1 to min(FLAX_TOPK_MAX, output elements);
 *	0 when the chain has no FLAX_POST_TOPK.
 * @nslots: number of job slots (0: module default).
 * @timeout_ms: default and longest request timeout (0: module default),
 *	at most the module parameter max_timeout_ms (default 10 min).
 * @result_size: out: bytes of one binary result (FLAX_IOC_INFER).
 * @threshold: binary32 threshold of FLAX_POST_THRESHOLD, else 0.
 * @max_batch: most jobs one FLAX_IOC_FETCH takes (0: nslots).
 * @max_queue_delay_us: how long FLAX_IOC_FETCH waits for @max_batch jobs
 *	once the oldest is queued, at most 10 s (0: no wait).
 * @max_queue: most requests queued or running at once, at most @nslots
 *	(0: nslots); beyond it a client waits for room.
 * @clamp_lo: binary32 lower bound of FLAX_MODEL_NORM_CLAMP, else 0.
 * @clamp_hi: binary32 upper bound of FLAX_MODEL_NORM_CLAMP, else 0.
 * @text_size: out: most bytes of one text result (FLAX_INFER_TEXT).
 * @text_max: FLAX_PRE_TOKENIZE: most bytes of a client's text, up to the
 *	module's max_slot_bytes (0: FLAX_TEXT_MAX_DEFAULT); else 0.
 * @nworkers: out: workers attached when the call ran (as sysfs
 *	"workers"); 0: requests wait, up to their timeout (-ETIMEDOUT), for
 *	a worker to attach.  Ignored by CREATE.
 * @worker_post: how many leading steps of @post_ops the worker runs
 *	itself, fused into its own computation (0: none, the kernel runs
 *	the whole chain).
 * @reserved: must be 0.
 * @owner_uid: with FLAX_MODEL_OWNER, the model's owner, a uid in the
 *	caller's user namespace (a uid other than the caller's fsuid needs
 *	CAP_CHOWN, -EPERM); without it the caller's fsuid.  The owner owns
 *	the model's node and sysfs files, may attach workers, destroy the
 *	model and change its labels, vocabulary and settings; the model
 *	counts against the owner's max_models_per_user unless the caller
 *	has CAP_SYS_ADMIN.  GET: the owner.
 * @owner_gid: with FLAX_MODEL_OWNER, the group of the model's node and
 *	sysfs files (a group the caller is not in needs CAP_CHOWN,
 *	-EPERM); without it the caller's fsgid.  GET: the group.
 * @node_mode: permission bits of /dev/flax/<name>, at most 0777 (0:
 *	FLAX_NODE_MODE_DEFAULT).  GET: the mode given at creation (a chmod
 *	of the node since is not seen).
 * @reserved2: must be 0.
 *
 * Fields from @threshold on came with FLAX_MODEL_DESC_SIZE_VER1, from
 * @owner_uid on with FLAX_MODEL_DESC_SIZE_VER2; a caller with an older
 * struct gets the defaults.  @topk,
 * @threshold, @timeout_ms, @max_batch, @max_queue_delay_us, @max_queue
 * and the normalisation means and standard deviations may change while
 * the model lives (through sysfs): MODEL_GET returns the current values.
 * The sysfs files norm_mean and norm_std show the arrays while their text
 * fits one page, and fail with EFBIG beyond; MODEL_GET returns them all.
 *
 * MODEL_GET reads @name (on a model's node, an empty @name names that
 * model), @norm_mean and @norm_std (0: not wanted; used only with
 * FLAX_PRE_NORMALIZE) and checks that @flags, @__pad0, @reserved and
 * @reserved2 are 0 (-EINVAL; the struct it returns holds the model's
 * @flags, so clear them before reusing it for another GET); it ignores
 * every other field.  It returns the whole description with the module's
 * defaults resolved: @nslots, @timeout_ms, @max_batch and @max_queue as
 * they apply, never the 0 given at creation, and @text_max of a
 * tokenising model.  CREATE writes back @id, @result_size, @text_size,
 * @nworkers and the settings that may change (@topk, @threshold,
 * @timeout_ms, @max_batch, @max_queue_delay_us, @max_queue), resolved;
 * @nslots and @text_max stay as given.
 */
struct flax_model_desc {
	__u32 id;
	__u32 flags;
	char name[FLAX_NAME_MAX];
	struct flax_tensor_spec input;
	struct flax_tensor_spec output;
	__u32 pre_op;
	__u32 norm_count;
	__u32 norm_scale;
	__u32 __pad0;
	__u64 norm_mean;
	__u64 norm_std;
	__u8 post_ops[FLAX_POST_CHAIN_MAX];
	__u32 topk;
	__u32 nslots;
	__u32 timeout_ms;
	__u32 result_size;
	__u32 threshold;
	__u32 max_batch;
	__u32 max_queue_delay_us;
	__u32 max_queue;
	__u32 clamp_lo;
	__u32 clamp_hi;
	__u32 text_size;
	__u32 text_max;
	__u32 nworkers;
	__u32 worker_post;
	__u32 reserved[2];
	__u32 owner_uid;
	__u32 owner_gid;
	__u32 node_mode;
	__u32 reserved2;
};

#define FLAX_MODEL_DESC_SIZE_VER0 176 /* up to @reserved[] of version 1 */
#define FLAX_MODEL_DESC_SIZE_VER1 208 /* @threshold to @reserved[] */
#define FLAX_MODEL_DESC_SIZE_VER2 224 /* @owner_uid to @reserved2 */

/**
 * struct flax_model_ref - names a model by id (FLAX_IOC_MODEL_DESTROY).
 * @model_id: the model.
 * @flags: must be 0.
 */
struct flax_model_ref {
	__u32 model_id;
	__u32 flags;
};

#define FLAX_MODEL_REF_SIZE_VER0 8

/**
 * struct flax_labels - a model's class names (FLAX_IOC_LABELS_SET/GET).
 * @model_id: the model.
 * @flags: must be 0.
 * @data: user pointer to the labels: UTF-8, one per line, each line ended
 *	by a newline (the last one's may be left out); label i names output
 *	element i.
 * @size: SET: bytes at @data, at most FLAX_LABELS_BYTES_MAX; 0 removes
 *	the labels.  GET: in: bytes available at @data; out: bytes of the
 *	labels (every line newline-ended), also when the call fails with
 *	-ENOSPC.
 * @count: out: number of labels.
 * @reserved: must be 0.
 *
 * SET checks every line: at most FLAX_LABEL_MAX bytes, not empty, no
 * control character (-EINVAL, and the kernel log names the line), at
 * most min(FLAX_LABELS_MAX, output elements) labels (-E2BIG).  Labels
 * name the entries of top-k, argmax and threshold results in text form.
 */
struct flax_labels {
	__u32 model_id;
	__u32 flags;
	__u64 data;
	__u32 size;
	__u32 count;
	__u32 reserved[2];
};

#define FLAX_LABELS_SIZE_VER0 32

/**
 * struct flax_vocab_set - a tokenising model's vocabulary (FLAX_IOC_VOCAB_SET).
 * @model_id: the model, created with FLAX_PRE_TOKENIZE.
 * @flags: must be 0.
 * @data: user pointer to the text of a BERT vocab.txt: one token a line,
 *	its id the line number from 0, "\n" or "\r\n" line ends.
 * @size: bytes at @data, at most 2 MiB.
 * @count: out: number of tokens.
 * @bad_line: out: on -EINVAL or -E2BIG, the 1-based line at fault (0: the
 *	fault is not one line's: the size, or a missing special token).
 * @reserved: must be 0.
 *
 * Once per model: until then requests fail with -ENODATA, after it a
 * second upload fails with -EBUSY.  At most 131072 tokens of 1 to 256
 * bytes of UTF-8 without blanks or control characters, each once, with
 * [CLS], [SEP], [UNK] and [PAD] among them (-EINVAL, -E2BIG; the kernel
 * log names the line).
 */
struct flax_vocab_set {
	__u32 model_id;
	__u32 flags;
	__u64 data;
	__u32 size;
	__u32 count;
	__u32 bad_line;
	__u32 reserved;
};

#define FLAX_VOCAB_SET_SIZE_VER0 32

/**
 * struct flax_region_layout - where things are in a model's slot region.
 * @magic: FLAX_REGION_MAGIC.
 * @abi_version: FLAX_ABI_VERSION.
 * @nslots: number of slots.
 * @ring_entries: entries per worker ring, a power of two >= @nslots.
 * @in_slot_size: stride between input slots, in bytes.
 * @out_slot_size: stride between output slots, in bytes.
 * @in_bytes: bytes of preprocessed input in each input slot.
 * @out_bytes: bytes of float32 output the worker writes in each output slot.
 * @in_offset: offset of input slot 0.
 * @out_offset: offset of output slot 0.
 * @rings_offset: offset of worker ring 0 (a struct flax_ring).
 * @ring_stride: bytes between worker rings.
 * @region_size: size of the whole region, a multiple of the page size.
 *
 * The kernel writes this at offset 0 of the region and returns it from
 * FLAX_IOC_WORKER_ATTACH.  All offsets are from the start of the mapping;
 * the region is mapped read-write with mmap(fd, 0, @region_size).
 */
struct flax_region_layout {
	__u32 magic;
	__u32 abi_version;
	__u32 nslots;
	__u32 ring_entries;
	__u32 in_slot_size;
	__u32 out_slot_size;
	__u32 in_bytes;
	__u32 out_bytes;
	__u64 in_offset;
	__u64 out_offset;
	__u64 rings_offset;
	__u64 ring_stride;
	__u64 region_size;
};

/**
 * struct flax_ring_entry - one fetched job.
 * @slot: slot index; input in input slot @slot, output goes to output slot
 *	@slot.
 * @tag: the job's tag, echoed back in struct flax_completion.
 */
struct flax_ring_entry {
	__u32 slot;
	__u32 tag;
};

/**
 * struct flax_ring - a worker's ring of fetched jobs, in the shared region.
 * @tail: entries produced so far (free-running; index with
 *	tail & (ring_entries - 1)).  Written by the kernel.
 * @head: entries the worker has consumed; the worker's to write, never
 *	read by the kernel.
 * @reserved: 0.
 * @entries: ring_entries entries.
 *
 * Only FLAX_IOC_FETCH by the owning worker appends to it.  The kernel
 * fills the entries, then publishes @tail with a release store; a reader
 * loads @tail with acquire semantics before reading entries.
 */
struct flax_ring {
	__u32 tail;
	__u32 head;
	__u32 reserved[2];
	struct flax_ring_entry entries[];
};

/**
 * struct flax_worker_attach - become a worker of a model (FLAX_IOC_WORKER_ATTACH).
 * @model_id: the model.
 * @flags: must be 0.
 * @worker: out: index of this worker's ring in the region.
 * @__pad0: must be 0.
 * @layout: out: the region's layout.
 *
 * An fd attaches to one model, once.  The fd's jobs are requeued (or
 * failed with -EIO after too many retries) when it is closed.
 */
struct flax_worker_attach {
	__u32 model_id;
	__u32 flags;
	__u32 worker;
	__u32 __pad0;
	struct flax_region_layout layout;
};

#define FLAX_WORKER_ATTACH_SIZE_VER0 88

/**
 * struct flax_completion - a worker's verdict on one job.
 * @slot: the slot, from struct flax_ring_entry.
 * @tag: the tag, from struct flax_ring_entry.
 * @status: 0 when the output slot holds the result, else a negative errno
 *	from -1 to -FLAX_STATUS_ERRNO_MAX that the client's INFER returns.
 *	Any other value makes the completion invalid (-EINVAL).
 * @reserved: must be 0.
 */
struct flax_completion {
	__u32 slot;
	__u32 tag;
	__s32 status;
	__u32 reserved;
};

/**
 * struct flax_complete - complete jobs (FLAX_IOC_COMPLETE).
 * @completions: user pointer to @count struct flax_completion.
 * @count: number of entries, at most the region's nslots.
 * @flags: must be 0.
 * @done: out: entries applied.
 * @reserved: must be 0.
 *
 * Entries are applied in order; the first bad one (a slot this worker
 * does not hold under that tag, a bad status, non-zero reserved) stops
 * the call with -EINVAL, leaving that job and the ones after it as they were.
 */
struct flax_complete {
	__u64 completions;
	__u32 count;
	__u32 flags;
	__u32 done;
	__u32 reserved;
};

#define FLAX_COMPLETE_SIZE_VER0 24

/**
 * struct flax_fetch - complete a batch and fetch the next (FLAX_IOC_FETCH).
 * @completions: user pointer to @ncomplete struct flax_completion.
 * @ncomplete: completions to apply first (0: none).
 * @max_jobs: most jobs to take, 1 to the region's nslots; the model's
 *	max_batch applies when smaller.
 * @max_wait_us: the longest batching delay this worker accepts, at most
 *	10 s; the model's max_queue_delay_us applies when smaller.
 * @timeout_ms: wait for a first job (0: forever).  On expiry the call
 *	succeeds with @count 0.  A signal while waiting gives -EINTR if no
 *	completion was applied, else success with @count 0 (so that a
 *	restarted call never applies completions twice).
 * @flags: FLAX_FETCH_* flags; other bits must be 0.
 * @first: out: ring position (free-running) of the first new entry.
 * @count: out: number of jobs fetched.
 * @done: out: completions applied.
 * @max_batch: out: the most jobs this call would take: @max_jobs, or the
 *	model's max_batch when smaller.  A worker that keeps fetched jobs
 *	over to run with the next ones bounds the batches it runs by it.
 * @reserved: must be 0.
 *
 * First applies @ncomplete completions as FLAX_IOC_COMPLETE does.  Then
 * waits up to @timeout_ms for a first job; once one is queued, waits
 * until @max_jobs are queued or the oldest queued job has waited
 * @max_wait_us, then takes up to @max_jobs jobs, oldest first, and
 * appends them to this worker's ring.  With FLAX_FETCH_NOWAIT it never
 * waits: it takes up to @max_jobs of the jobs queued now (@count 0 if
 * none), ignoring @timeout_ms and the batching delay -- for a worker that
 * still holds jobs and wants more to fill a batch, but not at the cost of
 * the ones it holds.
 */
struct flax_fetch {
	__u64 completions;
	__u32 ncomplete;
	__u32 max_jobs;
	__u32 max_wait_us;
	__u32 timeout_ms;
	__u32 flags;
	__u32 first;
	__u32 count;
	__u32 done;
	__u32 max_batch;
	__u32 reserved;
};

#define FLAX_FETCH_SIZE_VER0 40 /* up to @done */
#define FLAX_FETCH_SIZE_VER1 48 /* @max_batch, @reserved */

/* struct flax_fetch.flags. */
#define FLAX_FETCH_NOWAIT _BITUL(0) /* take what is queued now, never sleep */
#define FLAX_FETCH_F_ALL (FLAX_FETCH_NOWAIT)

/**
 * struct flax_infer - run a model on one input, synchronously (FLAX_IOC_INFER).
 *
 * @model_id: the model.
 * @flags: FLAX_INFER_* flags.
 * @input: user pointer to the input, in the model's input dtype.
 * @output: user pointer to the result buffer.
 * @input_size: bytes at @input; must equal the model's input size (for
 *	FLAX_PRE_TOKENIZE: 0 to text_max bytes of UTF-8 text).
 * @output_size: in: bytes available at @output; out: bytes written, or
 *	the bytes needed when the call fails with -ENOSPC (the binary
 *	result's size, or with FLAX_INFER_TEXT the text's length).
 * @timeout_ms: 0 for the model's timeout; a shorter one is honoured, a
 *	longer one is capped to the model's.
 * @priority: 0 (normal) to FLAX_PRIORITY_MAX; see FLAX_PRIORITY_MAX.
 * @worker_status: out: when the call fails with -EIO because the worker
 *	failed the job, the worker's own code (-1 to -FLAX_STATUS_ERRNO_MAX,
 *	struct flax_completion.status); else 0.  The worker's code is its
 *	own business: the kernel never returns it as the call's errno.
 * @reserved: must be 0.
 *
 * Fields from @worker_status on came with FLAX_INFER_SIZE_VER1.
 */
struct flax_infer {
	__u32 model_id;
	__u32 flags;
	__u64 input;
	__u64 output;
	__u32 input_size;
	__u32 output_size;
	__u32 timeout_ms;
	__u32 priority;
	__s32 worker_status;
	__u32 reserved;
};

/*
 * Request priorities (struct flax_infer.priority, struct
 * flax_submit.priority): a worker's FETCH takes the queued jobs of the
 * highest priority first, and jobs of one priority in the order they
 * were queued (a job requeued after its worker died goes first among
 * its priority).  0, what requests had before priorities existed, is the
 * normal priority; larger values come first.  A batch of a FETCH may mix
 * priorities; its max_queue_delay_us wait runs from the first job it
 * would take.
 */
#define FLAX_PRIORITY_MAX 3

#define FLAX_INFER_SIZE_VER0 40 /* up to @priority */
#define FLAX_INFER_SIZE_VER1 48 /* @worker_status, @reserved */

/*
 * struct flax_infer.flags: FLAX_INFER_TEXT asks for the result as text,
 * for people and shells (not NUL-terminated; at most the model's
 * text_size bytes).  Numbers are printed as C's "%.6g" prints them.
 *  - top-k, argmax and threshold results: one line per entry,
 *    "<label>\t<score>\n", the label being the class index in decimal
 *    when the model has no labels;
 *  - vectors: the values separated by single spaces, then "\n".
 */
#define FLAX_INFER_TEXT _BITUL(0)

/**
 * struct flax_submit_entry - one request of FLAX_IOC_SUBMIT.
 * @input: user pointer to the input (as struct flax_infer.input).
 * @user_data: the caller's, returned with the result by FLAX_IOC_REAP.
 * @input_size: bytes at @input (as struct flax_infer.input_size).
 * @timeout_ms: 0 for the model's timeout; a shorter one is honoured.
 *	It runs from the submission: a request not finished by then ends
 *	with -ETIMEDOUT, reaped like any other result.
 * @ticket: out: the request's ticket, unique on the fd, never 0.
 */
struct flax_submit_entry {
	__u64 input;
	__u64 user_data;
	__u32 input_size;
	__u32 timeout_ms;
	__u64 ticket;
};

#define FLAX_SUBMIT_ENTRY_SIZE_VER0 32

/**
 * struct flax_submit - queue requests and return at once (FLAX_IOC_SUBMIT).
 * @model_id: the model.
 * @flags: FLAX_INFER_TEXT: results in text form.
 * @entries: user pointer to @count struct flax_submit_entry.
 * @count: requests, 1 to the model's nslots.
 * @submitted: out: requests queued, in order from the first.
 * @priority: of every request of the call, 0 (normal) to
 *	FLAX_PRIORITY_MAX (as struct flax_infer.priority).
 * @entry_size: bytes of one element of @entries (0: the original
 *	FLAX_SUBMIT_ENTRY_SIZE_VER0), at least FLAX_SUBMIT_ENTRY_SIZE_VER0
 *	and at most 4096; each element is read as an extensible struct
 *	(a longer one's tail must be zero: -E2BIG), so entries can grow.
 *
 * The input is copied and preprocessed during the call; the result waits
 * on the fd until FLAX_IOC_REAP collects it, and poll() reports the fd
 * readable (EPOLLIN) while a result waits.  When the model has max_queue
 * requests under way the call waits for room, or with O_NONBLOCK stops:
 * it fails with -EAGAIN if nothing was queued, else succeeds with
 * @submitted short.  Any other error on an entry also stops the call
 * there (the error if nothing was queued).  Closing the fd cancels what
 * it has not reaped.
 */
struct flax_submit {
	__u32 model_id;
	__u32 flags;
	__u64 entries;
	__u32 count;
	__u32 submitted;
	__u32 priority;
	__u32 entry_size;
};

#define FLAX_SUBMIT_SIZE_VER0 32

/**
 * struct flax_reap_entry - one finished request (FLAX_IOC_REAP).
 * @output: in: user pointer to a buffer for the result.
 * @ticket: out: the request's ticket.
 * @user_data: out: the request's user_data.
 * @output_size: in: bytes at @output; out: bytes of the result written,
 *	or needed when @status is -ENOSPC.
 * @status: out: 0, or the negative errno the request failed with (as
 *	FLAX_IOC_INFER's), or -ENOSPC: the buffer is too small, and the
 *	result stays on the fd for the next FLAX_IOC_REAP.
 * @worker_status: out: with @status -EIO from the worker's failure, the
 *	worker's own code (as struct flax_infer.worker_status); else 0.
 * @reserved: out: 0.
 *
 * Fields from @worker_status on came with FLAX_REAP_ENTRY_SIZE_VER1
 * (struct flax_reap.entry_size says which a caller has).
 */
struct flax_reap_entry {
	__u64 output;
	__u64 ticket;
	__u64 user_data;
	__u32 output_size;
	__s32 status;
	__s32 worker_status;
	__u32 reserved;
};

#define FLAX_REAP_ENTRY_SIZE_VER0 32 /* up to @status */
#define FLAX_REAP_ENTRY_SIZE_VER1 40 /* @worker_status, @reserved */

/**
 * struct flax_reap - collect finished requests (FLAX_IOC_REAP).
 * @entries: user pointer to @count struct flax_reap_entry, their
 *	@output and @output_size filled in.
 * @count: most results to collect, at least 1.
 * @flags: must be 0.
 * @timeout_ms: wait up to this long for a first result (0: do not wait).
 * @reaped: out: entries filled, in the order the requests finished, the
 *	last one possibly an -ENOSPC entry whose result is kept.
 * @pending: out: requests of this fd not yet reaped, after the call.
 * @reserved: must be 0.
 * @entry_size: bytes of one element of @entries, FLAX_REAP_ENTRY_SIZE_VER0
 *	to 4096; 0 means sizeof(struct flax_reap_entry) of this header
 *	(FLAX_REAP_ENTRY_SIZE_VER1), and a caller with the
 *	FLAX_REAP_SIZE_VER0 struct has FLAX_REAP_ENTRY_SIZE_VER0 entries.
 *	Each element is read as an extensible struct (a longer one's tail
 *	must be zero: -E2BIG) for its @output and @output_size, and
 *	min(@entry_size, the kernel's entry size) bytes are written back.
 * @__pad0: must be 0.
 *
 * Returns with @reaped 0 when nothing finished in time.  An entry whose
 * buffer is too small gets @status -ENOSPC and ends the call (its result
 * is kept).  A signal while waiting gives -EINTR.
 */
struct flax_reap {
	__u64 entries;
	__u32 count;
	__u32 flags;
	__u32 timeout_ms;
	__u32 reaped;
	__u32 pending;
	__u32 reserved;
	__u32 entry_size;
	__u32 __pad0;
};

#define FLAX_REAP_SIZE_VER0 32 /* up to @reserved */
#define FLAX_REAP_SIZE_VER1 40 /* @entry_size, @__pad0 */

/**
 * struct flax_topk_entry - one class of a top-k result.
 * @index: class index in the output tensor.
 * @score: binary32 score (a probability after FLAX_POST_SOFTMAX).
 */
struct flax_topk_entry {
	__u32 index;
	__u32 score;
};

/**
 * struct flax_topk_result - result of a chain ending in FLAX_POST_TOPK.
 * @count: number of entries (the model's k), highest score first; equal
 *	scores are ordered by ascending index.
 * @reserved: 0.
 * @entries: @count entries.
 */
struct flax_topk_result {
	__u32 count;
	__u32 reserved;
	struct flax_topk_entry entries[];
};

#define FLAX_IOC_MAGIC 0xFA

/* clang-format off */
#define FLAX_IOC_INFO		_IOR(FLAX_IOC_MAGIC, 0x00, struct flax_info)
#define FLAX_IOC_MODEL_CREATE	_IOWR(FLAX_IOC_MAGIC, 0x01, struct flax_model_desc)
#define FLAX_IOC_MODEL_GET	_IOWR(FLAX_IOC_MAGIC, 0x02, struct flax_model_desc)
#define FLAX_IOC_MODEL_DESTROY	_IOW(FLAX_IOC_MAGIC, 0x03, struct flax_model_ref)
#define FLAX_IOC_LABELS_SET	_IOWR(FLAX_IOC_MAGIC, 0x04, struct flax_labels)
#define FLAX_IOC_LABELS_GET	_IOWR(FLAX_IOC_MAGIC, 0x05, struct flax_labels)
#define FLAX_IOC_VOCAB_SET	_IOWR(FLAX_IOC_MAGIC, 0x06, struct flax_vocab_set)
#define FLAX_IOC_WORKER_ATTACH	_IOWR(FLAX_IOC_MAGIC, 0x10, struct flax_worker_attach)
#define FLAX_IOC_FETCH		_IOWR(FLAX_IOC_MAGIC, 0x11, struct flax_fetch)
#define FLAX_IOC_COMPLETE	_IOWR(FLAX_IOC_MAGIC, 0x12, struct flax_complete)
#define FLAX_IOC_INFER		_IOWR(FLAX_IOC_MAGIC, 0x20, struct flax_infer)
#define FLAX_IOC_SUBMIT		_IOWR(FLAX_IOC_MAGIC, 0x21, struct flax_submit)
#define FLAX_IOC_REAP		_IOWR(FLAX_IOC_MAGIC, 0x22, struct flax_reap)
/* clang-format on */

#endif /* _UAPI_LINUX_FLAXDEV_H */
