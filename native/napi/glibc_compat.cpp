// Lets the Linux x86-64 addon load on glibc 2.28 (Node 18's own minimum; it asks for at most GLIBC_2.25) although it
// is built on a newer glibc, with libstdc++ and libgcc linked in statically (binding.gyp, CMakeLists.txt). A static
// archive's references bind to the newest version of a glibc symbol; this file defines, hidden, each symbol that
// would otherwise need a version newer than 2.28, so every reference in the addon (its own, libstdc++.a's,
// libgcc_eh.a's, libcudart_static.a's) binds here instead, and each of these uses an old version or an old function.
// Not in sanitizer builds: there, the sanitizer runtime must intercept these calls by name.
#include <cstdint>  // on glibc, defines __GLIBC__
#if defined(__GLIBC__) && defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)

#include <dlfcn.h>
#include <link.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

// A hidden SYM that jumps to SYM@VERSION, the oldest x86-64 version of it; a tail jump, so any signature works.
#define DYNAMOE_GLIBC_OLD(sym, version)                                               \
  __asm__(".pushsection .text\n"                                                      \
          ".globl " #sym "\n.hidden " #sym "\n.type " #sym ", @function\n"            \
          ".symver dynamoe_old_" #sym ", " #sym "@" version "\n"                      \
          #sym ": jmp dynamoe_old_" #sym "@PLT\n"                                     \
          ".size " #sym ", . - " #sym "\n.popsection\n");

// libm 2.27 / 2.29 added new versions (no errno) of these; the old ones still set errno, which is all they differ in.
DYNAMOE_GLIBC_OLD(exp, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(expf, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(log, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pow, "GLIBC_2.2.5")
// glibc 2.34 moved libpthread into libc under new versions; the old ones are the same functions.
DYNAMOE_GLIBC_OLD(pthread_create, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_detach, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_join, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_once, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_key_create, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(__pthread_key_create, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_key_delete, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_getspecific, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_setspecific, "GLIBC_2.2.5")

#ifdef DYNAMOE_CUDART_STATIC
// The CUDA build's static CUDA runtime also calls these, before glibc 2.34 in libdl, libpthread and librt.
DYNAMOE_GLIBC_OLD(dlopen, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(dlmopen, "GLIBC_2.3.4")
DYNAMOE_GLIBC_OLD(dlclose, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(dlsym, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(dlvsym, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(dlerror, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_kill, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_condattr_setpshared, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_mutex_trylock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_mutexattr_init, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_mutexattr_destroy, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_mutexattr_setpshared, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_mutexattr_settype, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_init, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_destroy, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_rdlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_wrlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_tryrdlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_trywrlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_timedrdlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_timedwrlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlock_unlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlockattr_init, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlockattr_destroy, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_rwlockattr_setpshared, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_spin_init, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_spin_destroy, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_spin_lock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_spin_trylock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(pthread_spin_unlock, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(sem_init, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(sem_destroy, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(sem_wait, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(sem_trywait, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(sem_timedwait, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(sem_post, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(shm_open, "GLIBC_2.2.5")
DYNAMOE_GLIBC_OLD(shm_unlink, "GLIBC_2.2.5")
#endif

// __fxstat64, what <sys/stat.h> turned fstat64 into before glibc 2.33 exported fstat64 itself.
extern "C" int dynamoe_old___fxstat64(int version, int fd, struct stat64* buf);
__asm__(".symver dynamoe_old___fxstat64, __fxstat64@GLIBC_2.2.5");

extern "C" {
// libstdc++'s file buffers (basic_file.o, linked in by <iostream>, which the CUDA build's CUB headers include) call
// fstat64 (glibc 2.33); the same through __fxstat64 and its x86-64 stat version, 1.
__attribute__((visibility("hidden"))) int fstat64(int fd, struct stat64* buf) { return dynamoe_old___fxstat64(1, fd, buf); }

// libstdc++ skips atomic reference counts while this is set (glibc 2.32); never set, they are always atomic.
__attribute__((visibility("hidden"))) char __libc_single_threaded = 0;

// std::random_device (linked in by libstdc++ itself, unused) reads arc4random (glibc 2.36); getentropy is 2.25.
__attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t value;
  if (getentropy(&value, sizeof value) != 0) abort();
  return value;
}

// libgcc_eh's unwinder finds a pc's unwind table with _dl_find_object (glibc 2.35); the same from dl_iterate_phdr.
__attribute__((visibility("hidden"))) int _dl_find_object(void* pc, dl_find_object* result) {
  struct Search {
    uintptr_t pc;
    dl_find_object* result;
  } search{reinterpret_cast<uintptr_t>(pc), result};
  auto visit = [](dl_phdr_info* info, size_t, void* data) -> int {
    auto* search = static_cast<Search*>(data);
    uintptr_t start = UINTPTR_MAX, end = 0;
    const ElfW(Phdr)* ehFrame = nullptr;
    bool contains = false;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
      const ElfW(Phdr)& segment = info->dlpi_phdr[i];
      const uintptr_t begin = info->dlpi_addr + segment.p_vaddr;
      if (segment.p_type == PT_GNU_EH_FRAME) ehFrame = &segment;
      if (segment.p_type != PT_LOAD) continue;
      if (begin < start) start = begin;
      if (begin + segment.p_memsz > end) end = begin + segment.p_memsz;
      if (search->pc >= begin && search->pc < begin + segment.p_memsz) contains = true;
    }
    if (!contains) return 0;
    *search->result = dl_find_object{};
    search->result->dlfo_map_start = reinterpret_cast<void*>(start);
    search->result->dlfo_map_end = reinterpret_cast<void*>(end);
    if (ehFrame != nullptr) search->result->dlfo_eh_frame = reinterpret_cast<void*>(info->dlpi_addr + ehFrame->p_vaddr);
    return 1;
  };
  return dl_iterate_phdr(visit, &search) != 0 ? 0 : -1;
}
}  // extern "C"

#endif
