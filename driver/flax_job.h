/* SPDX-License-Identifier: GPL-2.0 */
/*
 * flaxdev jobs: clients (INFER), workers (ATTACH, FETCH, COMPLETE, mmap).
 *
 * Copyright (C) 2026 The flaxdev developers
 */
#ifndef _FLAX_JOB_H
#define _FLAX_JOB_H

#include <linux/poll.h>
#include <linux/types.h>

struct file;
struct flax_model;
struct vm_area_struct;

void flax_model_kill(struct flax_model *model);

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

int flax_file_open(struct file *file);
void flax_file_release(struct file *file);
__poll_t flax_file_poll(struct file *file, poll_table *wait);
int flax_worker_mmap(struct file *file, struct vm_area_struct *vma);

#endif /* _FLAX_JOB_H */
