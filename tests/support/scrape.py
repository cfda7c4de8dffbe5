"""Reading the proxy's /metrics as Prometheus would, with the official client's parser."""
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(site, with_headers=False):
    with urllib.request.urlopen(site.proxy.api_url + "/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
        return (text, resp.headers) if with_headers else text


def samples(text):
    """{(name, ((label, value), ...)): value} of every sample, parsed by the client's
    own parser."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for metric in text_string_to_metric_families(text) for sample in metric.samples}


def value(text, family, **labels):
    """The sample named `family` with exactly these labels (0 when absent)."""
    return samples(text).get((family, tuple(sorted(labels.items()))), 0.0)
