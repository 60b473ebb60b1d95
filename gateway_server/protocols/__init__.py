"""The agent protocols: Anthropic's Messages API and OpenAI's Responses API on every chat route.

Pure translation between each protocol and the gateway's internal chat representation (the
OpenAI-shaped standard request, response and stream chunks every provider adapter already speaks),
so no provider is written twice:

- ``messages.py``: Anthropic Messages request → internal chat request, internal response →
  Anthropic message, errors in Anthropic's shape, the ``count_tokens`` estimate;
- ``messages_stream.py``: the state machine turning internal stream chunks into Anthropic's events;
- ``responses.py`` and ``responses_stream.py``: the same two halves for the Responses API;
- ``response_store.py``: stored responses for ``previous_response_id`` (memory or Redis);
- ``native.py``: the pass-through of a protocol to its own vendor (Anthropic routes for
  ``/v1/messages``, OpenAI routes for ``/v1/responses``), as adapters of the same upstream client.

The I/O (dispatcher, reliability, streaming to the client) is in ``gateway_server/api/agents.py``.
"""
