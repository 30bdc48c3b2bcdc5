"""The openscap plugin's remediation: with ``--remediate``, build a copy of a scanned image
with the fix script the scanner wrote applied (``IMAGE:TAG-remediated``).

OpenSCAP is the built-in scanner that writes fix scripts (``oscap xccdf generate fix``). The
core only asks the scanner for one (scanner argument ``remediate=true``), keeps such runs out
of the result cache, and refuses ``--remediate`` for scanners that are neither built in nor
trusted with ``--trust-scanner``; everything else happens here, in a plugin registered like
any third party's. It serves every scanner that leaves ``remediation.sh``.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from atomicscan.context import ResultContext
from atomicscan.errors import AtomicscanError
from atomicscan.hookspecs import hookimpl
from atomicscan.results import ScanResult
from atomicscan.runtime import Runtime, Target
from atomicscan.safetext import printable
from atomicscan.targets import normalize_image_ref

#: The file a scanner leaves in /scanout/<key>/ when asked to remediate (scanner arg
#: ``remediate=true``).
FIX_SCRIPT = "remediation.sh"
SUFFIX = "-remediated"


class RemediationError(AtomicscanError):
    """The remediated image could not be built."""


def remediated_name(target: Target) -> str:
    """``name:tag`` becomes ``name:tag-remediated``; an image given by ID keeps a name of ours."""
    wanted = normalize_image_ref(target.ref)
    full = next((n for n in target.names if n == wanted or n.endswith("/" + wanted)), None)
    if full is None or "@" in full:
        return f"localhost/atomicscan-remediated:{target.id[:12]}"
    return full + SUFFIX


#: What an image's USER may look like to be written back into a Containerfile line.
_USER = re.compile(r"[A-Za-z0-9_.:-]{1,256}")


def containerfile(base_id: str, user: str) -> str:
    """Apply the fix script as root, then restore the image's own user."""
    if user and not _USER.fullmatch(user):
        # The image's config is its author's text: a newline would add build instructions.
        raise RemediationError(f"the image's USER {printable(repr(user))} can't be restored "
                               "safely in the remediated image")
    lines = [
        f"FROM {base_id}",
        "USER root",
        f"COPY {FIX_SCRIPT} /tmp/atomicscan-{FIX_SCRIPT}",
        # A failing fix must not stop the others: the script handles each rule on its own.
        f"RUN bash /tmp/atomicscan-{FIX_SCRIPT} || true; rm -f /tmp/atomicscan-{FIX_SCRIPT}",
        "LABEL io.atomicscan.remediated-from=" + base_id,
    ]
    if user and user not in {"root", "0", "0:0"}:
        lines.append(f"USER {user}")
    return "\n".join(lines) + "\n"


def build_remediated(runtime: Runtime, target: Target, fix_script: Path) -> str:
    """Build and tag the remediated image offline; the scanned image is left untouched."""
    if target.type != "image":
        raise RemediationError(f"--remediate works on images only; {target.ref} is a "
                               f"{target.type}")
    tag = remediated_name(target)
    user = runtime.image_user(target.id)
    with tempfile.TemporaryDirectory(prefix="atomicscan-remediate-") as scratch:
        context = Path(scratch)
        (context / FIX_SCRIPT).write_bytes(fix_script.read_bytes())
        (context / "Containerfile").write_text(containerfile(target.id, user))
        runtime.build_image(context, tag)
    return tag


# trylast: the image is built from the result every other plugin has shaped.
@hookimpl(trylast=True)
def atomicscan_process_result(result: ScanResult, context: ResultContext) -> ScanResult | None:
    if not context.remediate:
        return None
    target, runtime = context.target, context.runtime
    fix = result.raw_dir / FIX_SCRIPT if result.raw_dir else None
    if not result.successful or fix is None or not fix.is_file():
        return result.replace(notes=(*result.notes, "no remediation: the scanner left no "
                                     f"{FIX_SCRIPT} for this target"))
    if target is None or runtime is None:
        return result.replace(notes=(*result.notes, "no remediation: no runtime holds "
                                     "this target"))
    context.progress(f"building the remediated image of {target.ref}")
    try:
        tag = build_remediated(runtime, target, fix)
    except AtomicscanError as exc:
        return result.replace(successful=False, error=f"remediation failed: {exc}")
    return result.replace(remediated_image=tag)
