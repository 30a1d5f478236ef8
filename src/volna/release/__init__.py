"""Safe microdata release: disclosure risk on the sample, protection, text redaction.

=================== ===============================================================
:mod:`.risk`        f_k, F_k, sdcMicro's individual and global risk, l-diversity
:mod:`.recode`      global recoding: bands with top coding, rare categories -> other
:mod:`.suppress`    local suppression to k (few cells, least important variable first)
:mod:`.redact`      free text: e-mails, phones, Telegram, links, names, places, orgs
:mod:`.protect`     :func:`release`: the pipeline, the refusal, :class:`Release`
:mod:`.report`      report.json / report.html, the codebook
:mod:`.command`     ``volna release``
=================== ===============================================================

Heavy pieces (natasha, phonenumbers) load only when text is redacted.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name in ("release", "Release", "ReleaseError", "ReleaseRefused", "failing_keys"):
        from volna.release import protect

        return getattr(protect, name)
    raise AttributeError(name)
