"""Safe microdata release: disclosure risk on the sample, protection, text redaction."""
