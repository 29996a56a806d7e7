// Service worker: cache-first for every file of the site, so after the first visit the page
// works offline (airplane mode). The cache name carries a hash of all files: a new export
// replaces the old cache on the next visit.
const CACHE = 'dermai-{{SITE_HASH}}';
const FILES = {{FILES}};

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith('dermai-') && k !== CACHE)
      .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  if (event.request.method !== 'GET') return;
  event.respondWith(caches.open(CACHE).then(async (cache) => {
    const hit = await cache.match(event.request, {ignoreSearch: true});
    if (hit) return hit;
    const response = await fetch(event.request);
    if (response.ok && new URL(event.request.url).origin === self.location.origin) {
      cache.put(event.request, response.clone());
    }
    return response;
  }));
});
