#!/usr/bin/env python3
"""Check, on the built objects, that vector registers are used only inside FPU sections.

Usage: ``kbuild/check-fpu.py OBJDIR [FPU_OBJECT]`` (OBJDIR: a module build
directory with its ``flaxdev.mod``; FPU_OBJECT: the one object allowed SSE and
AVX code, default ``flax_ops.o``).  Exit status 0 when clean, 1 with a list of
violations, 2 on a usage or tool error.  Run by ``make check`` (``check-fpu``)
on the W=1 builds of ``check-build``.

The rule, checked on ``objdump -dr`` of every object of the module:

1. A function *needs the FPU* if one of its instructions names an MMX, SSE,
   AVX or AVX-512 register (``%mm``, ``%xmm``, ``%ymm``, ``%zmm``) or is one of
   ``vzeroupper``, ``vzeroall``, ``ldmxcsr``, ``stmxcsr``, ``emms``; or if it
   calls (or tail-calls) a function that needs the FPU at a point that some
   path from its entry reaches without having called ``kernel_fpu_begin_mask()``
   since the last ``kernel_fpu_end()``.  That is a data-flow analysis over the
   function's control-flow graph (direct jumps; a function with an indirect
   jump is treated as outside a section everywhere).  Repeated to a fixpoint.
2. Every function that needs the FPU must belong to FPU_OBJECT.  Module entry
   points (init, exit, file operations, sysfs, exported API) live in the other
   objects, so any chain of calls that reaches vector code from them without
   passing through a section ends in a violation here.
3. No function that needs the FPU may have its address taken or be exported
   (a relocation to it other than a direct call or tail call): its callers
   could not be checked.

So what is proved is: on every path of direct calls from code outside
FPU_OBJECT, each instruction that touches vector state runs after a
``kernel_fpu_begin_mask()`` and before the matching ``kernel_fpu_end()``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

VEC_REG = re.compile(r"%(?:[xyz]mm\d+|mm\d)\b")
VEC_INSN = {"vzeroupper", "vzeroall", "ldmxcsr", "stmxcsr", "emms"}
BEGIN = "kernel_fpu_begin_mask"
END = "kernel_fpu_end"

FUNC_RE = re.compile(r"^([0-9a-f]+) <(.+)>:$")
INSN_RE = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")
SECTION_RE = re.compile(r"^Disassembly of section (.+):$")
RELOC_RE = re.compile(r"([0-9a-f]+): (R_X86_64_\w+)\t([^\s+-]+)([+-]0x[0-9a-f]+)?")
#: Sections whose relocations can hold a function's address at run time (the
#: others are debug information, ftrace, ORC and patching tables).
RUNTIME_SECTIONS = (".text", ".init", ".exit", ".data", ".rodata", ".bss", "___ksymtab", ".ref.")
TARGET_RE = re.compile(r"^([0-9a-f]+) <(.+?)(?:\+0x([0-9a-f]+))?>$")


@dataclass
class Insn:
    addr: int
    mnemonic: str
    operands: str
    relocs: list[tuple[int, str, str, int]]  # (offset, type, symbol, addend)


@dataclass
class Func:
    obj: str
    name: str
    section: str
    start: int
    insns: list[Insn] = field(default_factory=list)
    uses_vec: bool = False
    needs_fpu: bool = False
    why: str = ""

    @property
    def key(self) -> str:
        return f"{self.obj}:{self.name}"


def disassemble(obj: Path) -> list[Func]:
    out = subprocess.run(
        ["objdump", "-dr", "-w", "--no-show-raw-insn", str(obj)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    funcs: list[Func] = []
    section = ""
    cur: Func | None = None
    for line in out.splitlines():
        if m := SECTION_RE.match(line):
            section = m.group(1)
            cur = None
        elif m := FUNC_RE.match(line):
            cur = Func(obj.name, m.group(2), section, int(m.group(1), 16))
            funcs.append(cur)
        elif cur is not None and (m := INSN_RE.match(line)):
            parts = m.group(2).split("\t")
            text = parts[0].strip()
            relocs = []
            for r in RELOC_RE.finditer("\t".join(parts[1:])):
                addend = int(r.group(4), 16) if r.group(4) else 0
                relocs.append((int(r.group(1), 16), r.group(2), r.group(3), addend))
            if not text and relocs and cur.insns:  # a relocation on a line of its own
                cur.insns[-1].relocs.extend(relocs)
                continue
            words = text.split(None, 1)
            mnemonic = words[0] if words else ""
            if mnemonic in ("notrack", "bnd", "rep", "repz", "repnz", "lock") and len(words) > 1:
                words = words[1].split(None, 1)
                mnemonic = words[0]
            operands = words[1] if len(words) > 1 else ""
            cur.insns.append(Insn(int(m.group(1), 16), mnemonic, operands, relocs))
    for f in funcs:
        for i in f.insns:
            if VEC_REG.search(i.operands) or i.mnemonic in VEC_INSN:
                f.uses_vec = True
                f.needs_fpu = True
                f.why = f"uses vector state at {i.addr:#x}: {i.mnemonic} {i.operands}"
                break
    return funcs


def is_jump(mnemonic: str) -> bool:
    return mnemonic.startswith("j")


def is_call(mnemonic: str) -> bool:
    return mnemonic.startswith("call")


class Module:
    def __init__(self, objdir: Path, objs: list[Path]) -> None:
        self.objdir = objdir
        self.funcs: list[Func] = []
        for obj in objs:
            self.funcs.extend(disassemble(obj))
        self.by_obj_name: dict[tuple[str, str], Func] = {}
        self.by_obj_addr: dict[tuple[str, str, int], Func] = {}
        self.globals: dict[str, list[Func]] = {}
        for f in self.funcs:
            self.by_obj_name[(f.obj, f.name)] = f
            self.by_obj_addr[(f.obj, f.section, f.start)] = f
            self.globals.setdefault(f.name, []).append(f)

    def resolve(self, f: Func, insn: Insn) -> tuple[Func | None, str]:
        """The function a call or jump goes to (None: outside the module), and its name."""
        for _off, _type, sym, addend in insn.relocs:
            if sym.startswith("."):  # section symbol + offset: a local function
                start = addend + 4  # PC-relative: -4 for the operand's end
                return self.by_obj_addr.get((f.obj, sym, start)), sym
            local = self.by_obj_name.get((f.obj, sym))
            if local is not None:
                return local, sym
            cands = self.globals.get(sym, [])
            return (cands[0] if len(cands) == 1 else None), sym
        m = TARGET_RE.match(insn.operands.strip())
        if m:
            name = m.group(2)
            target = self.by_obj_name.get((f.obj, name))
            if target is not None and (m.group(3) is None or target is not f):
                return target, name
            return None, name
        return None, ""

    def outside_points(self, f: Func) -> list[bool]:
        """For each instruction: may it run outside an FPU section (entry state: outside)?"""
        n = len(f.insns)
        index = {insn.addr: k for k, insn in enumerate(f.insns)}
        if any(is_jump(i.mnemonic) and "*" in i.operands for i in f.insns):
            return [True] * n  # indirect jump: no analysis, assume the worst
        # Only "may be outside a section" is propagated: an instruction never
        # reached in that state is inside a section (or unreachable).
        outside = [False] * n
        work = [0] if n else []
        if n:
            outside[0] = True
        while work:
            k = work.pop()
            insn = f.insns[k]
            after = True
            succ: list[int] = []
            if is_call(insn.mnemonic):
                _t, name = self.resolve(f, insn)
                after = name != BEGIN
                succ.append(k + 1)
            elif is_jump(insn.mnemonic):
                m = TARGET_RE.match(insn.operands.strip())
                if m is not None and m.group(2) == f.name and not insn.relocs:
                    tk = index.get(int(m.group(1), 16))
                    if tk is not None:
                        succ.append(tk)
                if insn.mnemonic not in ("jmp", "jmpq"):
                    succ.append(k + 1)
            elif not insn.mnemonic.startswith(("ret", "ud2", "int3")):
                succ.append(k + 1)
            for s in succ:
                if after and s < n and not outside[s]:
                    outside[s] = True
                    work.append(s)
        return outside

    def check(self, fpu_obj: str) -> list[str]:
        outside = {f.key: self.outside_points(f) for f in self.funcs}
        changed = True
        while changed:
            changed = False
            for f in self.funcs:
                if f.needs_fpu:
                    continue
                for k, insn in enumerate(f.insns):
                    if not (is_call(insn.mnemonic) or is_jump(insn.mnemonic)):
                        continue
                    target, _name = self.resolve(f, insn)
                    if target is None or target is f or not target.needs_fpu:
                        continue
                    if outside[f.key][k]:
                        f.needs_fpu = True
                        f.why = (
                            f"calls {target.key} (which needs the FPU) at {insn.addr:#x}, "
                            "reachable outside kernel_fpu_begin/end"
                        )
                        changed = True
                        break
        errors = []
        for f in self.funcs:
            if f.needs_fpu and f.obj != fpu_obj:
                errors.append(f"{f.key}: {f.why}")
        # address taken or exported: any relocation to it but a direct call or jump
        call_sites = {
            (f.obj, f.section, off)
            for f in self.funcs
            for i in f.insns
            if is_call(i.mnemonic) or is_jump(i.mnemonic)
            for off, *_ in i.relocs
        }
        needs = {(f.obj, f.name) for f in self.funcs if f.needs_fpu}
        starts = {(f.obj, f.section, f.start): f for f in self.funcs if f.needs_fpu}
        for obj in {f.obj for f in self.funcs}:
            for section, off, sym, addend in relocations(self.objdir / obj):
                if not section.startswith(RUNTIME_SECTIONS) or (obj, section, off) in call_sites:
                    continue
                hit = starts.get((obj, sym, addend)) if sym.startswith(".") else None
                if (
                    (obj, sym) in needs
                    or (
                        sym in self.globals
                        and any((g.obj, g.name) in needs for g in self.globals[sym])
                    )
                    or hit
                ):
                    errors.append(f"{obj}: {section}+{off:#x} takes the address of "
                                  f"{hit.name if hit else sym}, which needs the FPU")  # fmt: skip
        return errors


def relocations(obj: Path) -> list[tuple[str, int, str, int]]:
    """(section, offset, symbol, addend) of every relocation of an object."""
    out = subprocess.run(["objdump", "-r", "-w", str(obj)], check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    rels = []
    section = ""
    for line in out.splitlines():
        if line.startswith("RELOCATION RECORDS FOR ["):
            section = line[line.index("[") + 1 : line.index("]")]
            if section.startswith(".rela."):
                section = section[len(".rela") :]
            continue
        parts = line.split()
        if len(parts) == 3 and parts[1].startswith("R_X86_64"):
            m = re.match(r"([^\s+-]+)([+-]0x[0-9a-f]+)?$", parts[2])
            assert m is not None
            addend = int(m.group(2), 16) if m.group(2) else 0
            rels.append((section, int(parts[0], 16), m.group(1), addend))
    return rels


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    objdir = Path(argv[1])
    fpu_obj = argv[2] if len(argv) == 3 else "flax_ops.o"
    mod = objdir / "flaxdev.mod"
    if not mod.is_file():
        print(f"check-fpu: {mod} not found (build the module first)", file=sys.stderr)
        return 2
    objs = [objdir / Path(line).name for line in mod.read_text().split() if line.endswith(".o")]
    if not any(o.name == fpu_obj for o in objs):
        print(f"check-fpu: {fpu_obj} is not an object of {mod}", file=sys.stderr)
        return 2
    module = Module(objdir, objs)
    errors = module.check(fpu_obj)
    nvec = sum(f.uses_vec for f in module.funcs)
    nneed = sum(f.needs_fpu for f in module.funcs)
    if errors:
        print(f"check-fpu {objdir}: vector state outside kernel_fpu_begin/end:")
        for e in errors:
            print(f"    {e}")
        return 1
    print(f"check-fpu {objdir}: {len(module.funcs)} functions in {len(objs)} objects; "
          f"{nvec} use vector registers, {nneed} need the FPU, all in {fpu_obj} and "
          "reached only from inside FPU sections")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
