"""Generating the assistant's reply to a visitor's message (a `ReplyJob`).

Modules, each importing only those listed before it:

    provider_stream  the provider request on a thread of its own, started early; cancellation
    passages         help-centre passages: the search that never fails a reply, cited sources
    tools            the tools the model may call (a registry: name -> schema + handler)
    context          what a reply is generated from: language, history, passages, prompt
    claim            claiming a job (nothing slow under its row lock) and keeping its lease
    delivery         the text as it streams, in coalesced deltas to the conversation's sockets
    finish           persisting the reply once, with its notices
    answer           one model's answer: the stream, and the tool loop
    degrade          no model could answer: quote the help centre, offer a person
    generate         `reply_generate(job_id=)` and `reply_jobs_requeue_stalled()`: the entry
                     points the Celery tasks call
"""
