"""The Scrapy side of scripts/bench-crawl: a spider that crawls the benchmark site like a
Tessera scraper node does (robots.txt obeyed, links followed within the site, one item per
HTML page with its URL, title and visible text), written as JSON lines.

    scrapy runspider scripts/bench-crawl-scrapy.py -a start=URL -O items.jsonl
"""

from urllib.parse import urlparse

import scrapy


class SiteSpider(scrapy.Spider):
    name = "bench-site"

    def __init__(self, start, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_urls = [start]
        self.allowed_domains = [urlparse(start).hostname]

    def parse(self, response):
        if not response.headers.get("Content-Type", b"").startswith(b"text/html"):
            return
        yield {
            "url": response.url,
            "title": response.xpath("//title/text()").get(),
            "text": " ".join(
                t.strip() for t in response.xpath("//body//text()").getall() if t.strip()
            ),
            "status": response.status,
        }
        for href in response.xpath("//a/@href").getall():
            yield response.follow(href, callback=self.parse)
