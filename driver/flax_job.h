/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev jobs: clients (INFER), workers (ATTACH, FETCH, COMPLETE, mmap).
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_JOB_H
#define _FLAX_JOB_H

#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/types.h>

struct file;
struct flax_model;
struct vm_area_struct;

/**
 * struct flax_shell - the shell path of one open model's node.
 * @lock: protects the rest; never held across an inference or a user
 *	copy.
 * @text: the text result of the fd's last write(2), kvmalloc()ed, or
 *	NULL (none yet, or the last one failed).
 * @len: bytes of @text.
 * @pos: bytes of @text read so far.
 * @gen: results stored so far: a read copies outside @lock and moves
 *	@pos only if no result replaced the one it copied.
 */
struct flax_shell {
	struct mutex lock; /* text, len, pos, gen */
	char *text;
	size_t len;
	size_t pos;
	u64 gen;
};

void flax_model_kill(struct flax_model *model);

int flax_norm_table_faster(void);
int flax_ioctl_infer(struct file *file, void __user *argp, unsigned int usize);
int flax_model_infer_text(struct flax_model *model, const void *input,
			  size_t in_len, char **text, size_t *len);
int flax_ioctl_worker_attach(struct file *file, void __user *argp,
			     unsigned int usize);
int flax_ioctl_fetch(struct file *file, void __user *argp, unsigned int usize);
int flax_ioctl_complete(struct file *file, void __user *argp,
			unsigned int usize);

int flax_ioctl_submit(struct file *file, void __user *argp, unsigned int usize);
int flax_ioctl_reap(struct file *file, void __user *argp, unsigned int usize);

int flax_file_open(struct file *file, struct flax_model *model);
void flax_file_release(struct file *file);
struct flax_model *flax_file_bound(struct file *file);
struct flax_shell *flax_file_shell(struct file *file);
struct flax_model *flax_file_model(struct file *file, u32 id, bool run);
__poll_t flax_file_poll(struct file *file, poll_table *wait);
int flax_worker_mmap(struct file *file, struct vm_area_struct *vma);

#endif /* _FLAX_JOB_H */
