"""Everything users run: the ``speechlabel`` command, the batch transcription job (gRPC server to come)."""
