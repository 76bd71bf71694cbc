"""Everything users run: the ``speechlabel`` command, the transcription job, the gRPC server and client."""
