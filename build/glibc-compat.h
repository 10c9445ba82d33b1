/* Forced into every pkcs11js source (g++ -include) by build/addon.mjs. glibc 2.34 moved
   dlopen & co. into libc under the new version GLIBC_2.34; binding the old versions keeps the
   addon loadable on glibc 2.28 (RHEL 8), where they live in libdl.so.2, which both Node and
   the addon list as NEEDED. Newer glibc still exports the old versions. */
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlerror,dlerror@GLIBC_2.2.5");
__asm__(".symver dlclose,dlclose@GLIBC_2.2.5");
