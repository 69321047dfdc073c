// The ncnn side of benches/armcount_yolo: loads a pnnx-converted model and runs it ITERS times
// on one ready input, one thread, every other option at ncnn's default (so fp16 storage and
// arithmetic where the CPU has them, as ncnn ships). ITERS=0 loads only, so the counter can
// take the load off. Built for aarch64 against libncnn.a by the bench script.
//
//   ncnn_runner PARAM BIN ITERS WIDTH HEIGHT
#include <cstdio>
#include <cstdlib>

#include "net.h"

int main(int argc, char** argv)
{
    if (argc != 6)
    {
        fprintf(stderr, "usage: %s PARAM BIN ITERS WIDTH HEIGHT\n", argv[0]);
        return 2;
    }
    const int iters = atoi(argv[3]), w = atoi(argv[4]), h = atoi(argv[5]);
    ncnn::Net net;
    net.opt.num_threads = 1;
    if (net.load_param(argv[1]) != 0 || net.load_model(argv[2]) != 0)
    {
        fprintf(stderr, "ncnn could not load %s / %s\n", argv[1], argv[2]);
        return 1;
    }
    // The same fixed ramp the onnxruntime runner feeds (values in [0, 1], CHW).
    ncnn::Mat in(w, h, 3);
    for (int c = 0; c < 3; c++)
    {
        float* p = in.channel(c);
        for (int i = 0; i < w * h; i++)
        {
            const size_t k = (size_t)c * w * h + i;
            p[i] = (float)((k * 7919) % 256) / 255.0f;
        }
    }
    for (int it = 0; it < iters; it++)
    {
        ncnn::Extractor ex = net.create_extractor();
        ex.input("in0", in);
        ncnn::Mat out;
        if (ex.extract("out0", out) != 0)
        {
            fprintf(stderr, "ncnn extract failed\n");
            return 1;
        }
        if (it == 0)
            fprintf(stderr, "output %dx%dx%d\n", out.c, out.h, out.w);
    }
    return 0;
}
