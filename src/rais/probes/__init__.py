"""Health checks ("test objects") and load measurement ("load objects").

``parse`` reads the ``[test.NAME]`` and ``[load.NAME]`` tables into the specs
of ``spec``; ``checks`` and ``loads`` run one check or take one sample;
``ProbeHub`` (``hub``) runs every object on its interval and tells
subscribers when the combined health of their tests changes; ``FakeProbeHub``
(``fake``) has the same API with states set by hand, for other tests.
"""
