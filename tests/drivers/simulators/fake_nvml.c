/*
 * A fake libnvidia-ml.so.1 for the Nvml driver's tests: it stands in for
 * the NVIDIA driver and its GPUs, which this machine does not have.
 *
 * It implements the few NVML entry points pynvml calls for kwapi, with the
 * real signatures and error codes.  The GPUs are described by the file named
 * in FAKE_NVML_STATE, read again on every call so a test can change them:
 * one line per GPU, either
 *
 *     <power in mW> <energy rate in mW, or -1 for no energy counter> [<update period in ms>]
 *
 * or the word "lost" (every call on that GPU fails with GPU_IS_LOST).
 * Without the file, nvmlInit fails with DRIVER_NOT_LOADED.  The energy
 * counter of each GPU integrates its energy rate over CLOCK_MONOTONIC; with
 * an update period, it moves only at multiples of that period of the clock,
 * as real GPUs update theirs every few tens of milliseconds.
 *
 * Build: gcc -shared -fPIC -o libnvidia-ml.so.1 fake_nvml.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_DRIVER_NOT_LOADED 9
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 16

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;

struct gpu {
    int lost;
    long long power_mw;
    long long energy_rate_mw;
    long long update_ms;
};

static int init_count = 0;
static double energy_mj[MAX_GPUS];
static double energy_at[MAX_GPUS];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Read the GPUs from the state file; return their count, or -1 without a file. */
static int load(struct gpu *gpus)
{
    const char *path = getenv("FAKE_NVML_STATE");
    FILE *file;
    char line[256];
    int count = 0;

    if (path == NULL || (file = fopen(path, "r")) == NULL)
        return -1;
    while (count < MAX_GPUS && fgets(line, sizeof line, file) != NULL) {
        struct gpu *gpu = &gpus[count];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        memset(gpu, 0, sizeof *gpu);
        if (strncmp(line, "lost", 4) == 0)
            gpu->lost = 1;
        else if (sscanf(line, "%lld %lld %lld", &gpu->power_mw, &gpu->energy_rate_mw,
                        &gpu->update_ms) < 2)
            continue;
        count++;
    }
    fclose(file);
    return count;
}

/* Check the library state and find the GPU behind a handle. */
static nvmlReturn_t lookup(nvmlDevice_t device, struct gpu *gpus, int *index)
{
    int count;

    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    count = load(gpus);
    if (count < 0)
        return NVML_ERROR_DRIVER_NOT_LOADED;
    *index = (int)(intptr_t)device - 1;
    if (*index < 0 || *index >= count)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpus[*index].lost)
        return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
    struct gpu gpus[MAX_GPUS];
    (void)flags;
    if (load(gpus) < 0)
        return NVML_ERROR_DRIVER_NOT_LOADED;
    init_count++;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void)
{
    return nvmlInitWithFlags(0);
}

nvmlReturn_t nvmlShutdown(void)
{
    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    init_count--;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result)
{
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
    struct gpu gpus[MAX_GPUS];
    int found;

    if (init_count == 0)
        return NVML_ERROR_UNINITIALIZED;
    if (count == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    found = load(gpus);
    if (found < 0)
        return NVML_ERROR_DRIVER_NOT_LOADED;
    *count = (unsigned int)found;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
    struct gpu gpus[MAX_GPUS];
    int found;
    nvmlReturn_t ret;

    if (device == NULL || index >= MAX_GPUS)
        return NVML_ERROR_INVALID_ARGUMENT;
    ret = lookup((nvmlDevice_t)(intptr_t)(index + 1), gpus, &found);
    if (ret != NVML_SUCCESS)
        return ret;
    *device = (nvmlDevice_t)(intptr_t)(index + 1);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
    struct gpu gpus[MAX_GPUS];
    int index;
    nvmlReturn_t ret = lookup(device, gpus, &index);

    if (ret != NVML_SUCCESS)
        return ret;
    if (name == NULL || length < 16)
        return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(name, length, "Fake GPU %d", index);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
    struct gpu gpus[MAX_GPUS];
    int index;
    nvmlReturn_t ret = lookup(device, gpus, &index);

    if (ret != NVML_SUCCESS)
        return ret;
    if (power == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    *power = (unsigned int)gpus[index].power_mw;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy)
{
    struct gpu gpus[MAX_GPUS];
    int index;
    double now;
    nvmlReturn_t ret = lookup(device, gpus, &index);

    if (ret != NVML_SUCCESS)
        return ret;
    if (energy == NULL)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (gpus[index].energy_rate_mw < 0)
        return NVML_ERROR_NOT_SUPPORTED;
    now = now_s();
    if (gpus[index].update_ms > 0) {
        double period = gpus[index].update_ms / 1000.0;
        now = (long long)(now / period) * period; /* the last update of the counter */
    }
    if (energy_at[index] == 0.0)
        energy_mj[index] = 5e8 * (index + 1); /* counters start far from zero */
    else
        energy_mj[index] += gpus[index].energy_rate_mw * (now - energy_at[index]);
    energy_at[index] = now;
    *energy = (unsigned long long)energy_mj[index];
    return NVML_SUCCESS;
}
