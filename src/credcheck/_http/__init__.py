"""The HTTP side of credcheck without I/O: the flows every client runs, whatever library sends its requests.

As h11 is for HTTP/1.1, and as one ``Auth.auth_flow`` generator serves both of httpx's clients, this package
holds every decision of talking to a range API (and, in ``credcheck.pairs._wire``, to a pair service) and no
socket, thread or clock. A flow (:meth:`ranges.RangeProtocol.get_range`) is a generator that yields what the
driver must do — :class:`events.Request` (send this) or :class:`events.Wait` (sleep this long) — and is sent
what happened: an :class:`events.Response`, an :class:`events.Failure` (the transport went wrong, classified)
or :data:`events.DEADLINE_PASSED`. It returns its answer or raises :class:`~credcheck.errors.RemoteError`. The
clock is passed in, so retries, backoff, ``Retry-After``, the deadlines and cache freshness are decided on the
driver's clock (or a test's); redirects and failed attempts are values inside the flow, never exceptions.

The modules, by role:

- ``events``: what a flow and its driver tell each other;
- ``options``: :class:`~options.ClientOptions`, every client's settings as one frozen object;
- ``urls``: base URLs checked, origins, URLs without credentials for reprs and logs;
- ``body``: a 200's body proven whole (framing, gzip, limits), and a range body parsed strictly;
- ``cache``: the range cache (its lock is the driver's);
- ``retrying``: timeouts, deadlines, retries, backoff and ``Retry-After``, which every flow runs on;
- ``ranges``: the range flow, for a lookup and for a copy kept elsewhere (the mirror);
- ``corpus``: the corpus-version flow (``GET /v1/corpus``), for range and pair clients alike.

Three drivers run the flows, each holding only sending, reading raw bytes under the deadline and classifying
its library's errors: ``credcheck.client.FlowDriver`` (requests), ``credcheck.aio.AsyncFlowDriver`` (httpx) and
``credcheck._keepalive.KeepAliveDriver`` (http.client, the mirror's). Each runs a flow so::

    flow = protocol.get_range(prefix, scheme, clock)
    try:
        event = next(flow)
        while True:
            if isinstance(event, Wait):
                sleep(event.seconds); event = flow.send(None)
            else:
                event = flow.send(exchange(event))   # a Response, a Failure or DEADLINE_PASSED
    except StopIteration as done:
        return done.value

``exchange`` sends ``event.url`` with ``event.headers``, bounded by ``event.timeout`` and ``event.deadline``,
follows no redirect itself, and for a 200 reads the body through a :class:`body.BodyReader` (the raw bytes as
they came, de-chunked but not decoded): a body that cannot be proven whole is a Failure, never a shorter range.
"""
